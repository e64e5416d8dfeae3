//! The story list: every stored story, newest first, to open or delete, and the New story
//! button. The list has one listener, installed once; its items carry their story's id.

use std::rc::Rc;

use wasm_bindgen_futures::spawn_local;
use web_sys::{Element, HtmlElement};

use super::{click, with_app, App};
use crate::web::dom::{
    append, by_testid, clear, closest, el, local_storage, on, text_el, toggle_class, window,
};
use crate::web::error::Result;
use crate::web::idb::{Db, StoredStory};

/// `localStorage` key of the story open when the page was left.
const CURRENT_STORY_KEY: &str = "storywriter.current-story";

/// Remembers the open story for the next visit.
pub(super) fn remember_current(story_id: &str) {
    if let Some(storage) = local_storage() {
        let _ = storage.set_item(CURRENT_STORY_KEY, story_id);
    }
}

/// The story list's node.
pub(super) struct StoryList {
    list: HtmlElement,
}

impl StoryList {
    /// Finds the list.
    pub(super) fn new() -> Self {
        Self {
            list: by_testid("story-list"),
        }
    }

    /// Installs the New story button's listener and the list's one listener.
    pub(super) fn wire(&self, app: &Rc<App>) {
        click(app, &by_testid("new-story"), |app| {
            if app.writing.running() {
                return;
            }
            app.state.borrow_mut().current = None;
            app.render_all();
            app.writing.focus_prompt();
            let app = app.clone();
            spawn_local(async move { app.stories.refresh(&app).await });
        });
        on::<web_sys::Event>(
            &self.list,
            "click",
            with_app(app, |app, event: web_sys::Event| {
                let Some((action, item)) = story_action(&event) else {
                    return;
                };
                let Some(id) = item.get_attribute("data-story-id") else {
                    return;
                };
                let app = app.clone();
                if action == "open" {
                    spawn_local(async move { app.stories.open(&app, &id).await });
                } else {
                    let title = item
                        .query_selector("button.open")
                        .ok()
                        .flatten()
                        .and_then(|b| b.text_content())
                        .unwrap_or_default();
                    let question = format!("Delete the story \"{title}\" and all its candidates?");
                    if window().confirm_with_message(&question).unwrap_or(false) {
                        spawn_local(async move { app.stories.delete(&app, &id).await });
                    }
                }
            }),
        );
    }

    /// Opens the database and the story open when the page was left (or the newest one).
    pub(super) async fn open_db(app: &Rc<App>) {
        match Db::open().await {
            Ok((db, problems)) => {
                if !problems.is_empty() {
                    app.notice(&format!(
                        "Stories not moved to the new store: {}",
                        problems.join("; ")
                    ));
                }
                app.state.borrow_mut().db = Some(db.clone());
                let remembered =
                    local_storage().and_then(|s| s.get_item(CURRENT_STORY_KEY).ok().flatten());
                match db.stories().await {
                    Ok((stories, errors)) => {
                        if !errors.is_empty() {
                            app.notice(&errors.join("; "));
                        }
                        let open = stories
                            .iter()
                            .find(|s| Some(&s.id) == remembered.as_ref())
                            .or(stories.first());
                        if let Some(entry) = open {
                            app.state.borrow_mut().current = read_story(app, &db, &entry.id).await;
                        }
                    }
                    Err(e) => app.notice(&format!("Stories could not be read: {e}")),
                }
                app.stories.refresh(app).await;
            }
            Err(e) => app.notice(&format!(
                "Stories cannot be saved in this browser (IndexedDB: {e})"
            )),
        }
        app.render_all();
    }

    /// Lists the stored stories again, the open one marked.
    pub(super) async fn refresh(&self, app: &App) {
        let Some(db) = app.db() else { return };
        let Ok((stories, _)) = db.stories().await else {
            return;
        };
        let current_id = app.current_id();
        clear(&self.list);
        for entry in stories {
            let item = el("li", "");
            let _ = item.set_attribute("data-story-id", &entry.id);
            toggle_class(&item, "current", Some(&entry.id) == current_id.as_ref());
            let open = text_el("button", "secondary open", &entry.title);
            open.set_title(&entry.title);
            let delete = text_el("button", "secondary", "×");
            delete.set_title("Delete this story");
            for (button, action) in [(&open, "open"), (&delete, "delete")] {
                let _ = button.set_attribute("data-action", action);
                append(&item, button);
            }
            append(&self.list, &item);
        }
    }

    /// Opens the stored story `id` (not while a round is running).
    async fn open(&self, app: &Rc<App>, id: &str) {
        let Some(db) = app.db() else { return };
        let Some(stored) = read_story(app, &db, id).await else {
            return;
        };
        if app.writing.running() {
            return;
        }
        remember_current(id);
        app.state.borrow_mut().current = Some(stored);
        app.writing.forget_speed();
        app.render_all();
        self.refresh(app).await;
    }

    /// Deletes the stored story `id` and its records.
    async fn delete(&self, app: &Rc<App>, id: &str) {
        if let Err(e) = delete_story(app, id).await {
            return app.notice(&format!("Not deleted: {e}"));
        }
        {
            let mut state = app.state.borrow_mut();
            if state.current.as_ref().map(|c| c.story.id.as_str()) == Some(id) {
                state.current = None;
            }
        }
        self.refresh(app).await;
        app.render_all();
    }
}

async fn delete_story(app: &App, id: &str) -> Result<()> {
    match app.db() {
        Some(db) => db.delete_story(id).await,
        None => Ok(()),
    }
}

/// The stored story `id`; what cannot be read of it is shown in the notice.
pub(super) async fn read_story(app: &App, db: &Db, id: &str) -> Option<StoredStory> {
    match db.story(id).await {
        Ok(Some((stored, problems))) => {
            if !problems.is_empty() {
                app.notice(&format!(
                    "Some candidates of this story could not be read (they stay stored): {}",
                    problems.join("; ")
                ));
            }
            Some(stored)
        }
        Ok(None) => None,
        Err(e) => {
            app.notice(&format!("Stories could not be read: {e}"));
            None
        }
    }
}

/// The action (`open` or `delete`) of the story-list button a click hit, and its item.
fn story_action(event: &web_sys::Event) -> Option<(String, Element)> {
    let button = closest(event, "button[data-action]")?;
    let item = button.closest("li").ok()??;
    Some((button.get_attribute("data-action")?, item))
}
