//! Small DOM helpers for the page. Text from the model or from imported files is only ever
//! set with [`set_text`] / [`text_el`] (text nodes), never as HTML.

use wasm_bindgen::prelude::*;
use wasm_bindgen::JsCast;
use web_sys::{Document, Element, HtmlElement, HtmlInputElement, HtmlTextAreaElement, Window};

/// The page's window.
pub fn window() -> Window {
    web_sys::window().expect("the app runs in a window")
}

/// The page's document.
pub fn document() -> Document {
    window().document().expect("the window has a document")
}

/// The element with `data-testid="{id}"` (every element the app drives has one).
pub fn by_testid(id: &str) -> HtmlElement {
    document()
        .query_selector(&format!("[data-testid=\"{id}\"]"))
        .ok()
        .flatten()
        .unwrap_or_else(|| panic!("index.html has an element with data-testid={id}"))
        .unchecked_into()
}

/// The input with `data-testid="{id}"`.
pub fn input(id: &str) -> HtmlInputElement {
    by_testid(id).unchecked_into()
}

/// The text area with `data-testid="{id}"`.
pub fn textarea(id: &str) -> HtmlTextAreaElement {
    by_testid(id).unchecked_into()
}

/// A new element `tag` with the class attribute `class` (none when empty).
pub fn el(tag: &str, class: &str) -> HtmlElement {
    let element: HtmlElement = document()
        .create_element(tag)
        .expect("valid tag name")
        .unchecked_into();
    if !class.is_empty() {
        element.set_class_name(class);
    }
    element
}

/// A new element `tag` with class `class` holding `text` as text.
pub fn text_el(tag: &str, class: &str, text: &str) -> HtmlElement {
    let element = el(tag, class);
    set_text(&element, text);
    element
}

/// Replaces the element's content by `text`, as text.
pub fn set_text(element: &Element, text: &str) {
    element.set_text_content(Some(text));
}

/// Removes every child of `element`.
pub fn clear(element: &Element) {
    element.set_text_content(None);
}

/// Appends `child` to `parent`.
pub fn append(parent: &Element, child: &Element) {
    parent
        .append_child(child)
        .expect("appending an element to an element works");
}

/// Sets each `(name, value)` attribute of `element`.
pub fn set_attributes(element: &Element, attributes: &[(&str, &str)]) {
    for (name, value) in attributes {
        let _ = element.set_attribute(name, value);
    }
}

/// The element children of `element`, in order.
pub fn children(element: &Element) -> Vec<Element> {
    std::iter::successors(element.first_element_child(), |child| {
        child.next_element_sibling()
    })
    .collect()
}

/// Where `key` moves in a list of `count` items from item `at` (`None`: none yet): Right and
/// Down to the next, Left and Up to the previous, Home and End to the ends; `None` when the
/// key is not one of them or the list is empty.
pub fn arrow_target(key: &str, at: Option<usize>, count: usize) -> Option<usize> {
    let last = count.checked_sub(1)?;
    Some(match (key, at) {
        ("ArrowRight" | "ArrowDown", None) | ("Home", _) => 0,
        ("ArrowRight" | "ArrowDown", Some(i)) => (i + 1).min(last),
        ("ArrowLeft" | "ArrowUp", Some(i)) => i.saturating_sub(1),
        ("ArrowLeft" | "ArrowUp", None) | ("End", _) => last,
        _ => return None,
    })
}

/// Shows or hides an element (the `hidden` attribute).
pub fn show(element: &HtmlElement, visible: bool) {
    element.set_hidden(!visible);
}

/// Adds or removes a class.
pub fn toggle_class(element: &Element, class: &str, on: bool) {
    let _ = element.class_list().toggle_with_force(class, on);
}

/// Calls `handler` on every `event` at `target`, for the page's lifetime: for listeners
/// installed once (the closure is never freed), never for elements made while rendering.
pub fn on<E: JsCast + wasm_bindgen::convert::FromWasmAbi + 'static>(
    target: &web_sys::EventTarget,
    event: &str,
    handler: impl FnMut(E) + 'static,
) {
    let closure = Closure::<dyn FnMut(E)>::new(handler);
    target
        .add_event_listener_with_callback(event, closure.as_ref().unchecked_ref())
        .expect("adding an event listener works");
    closure.forget();
}

/// The nearest element matching `selector` at or above the event's target: what a delegated
/// listener (one on a list, for all its items) was clicked on.
pub fn closest(event: &web_sys::Event, selector: &str) -> Option<Element> {
    let target: Element = event.target()?.dyn_into().ok()?;
    target.closest(selector).ok()?
}

/// The page's `localStorage`, when the browser gives it one.
pub fn local_storage() -> Option<web_sys::Storage> {
    window().local_storage().ok().flatten()
}

/// Offers `text` as a download named `name` (a Blob behind an object URL).
pub fn download(name: &str, mime: &str, text: &str) -> Result<(), JsValue> {
    let parts = js_sys::Array::of1(&JsValue::from_str(text));
    let options = web_sys::BlobPropertyBag::new();
    options.set_type(mime);
    let blob = web_sys::Blob::new_with_str_sequence_and_options(&parts, &options)?;
    let url = web_sys::Url::create_object_url_with_blob(&blob)?;
    let link: web_sys::HtmlAnchorElement = el("a", "").unchecked_into();
    link.set_href(&url);
    link.set_download(name);
    link.click();
    web_sys::Url::revoke_object_url(&url)?;
    Ok(())
}

/// Milliseconds since the page started (for speeds).
pub fn now_ms() -> f64 {
    js_sys::Date::now()
}
