//! The page's IndexedDB store: every story (as JSON, with all its candidate records) and every
//! candidate record on its own (for export and for tables learned from the writer's choices).
//!
//! Database `storywriter`, version 1, object stores `stories` (key: story id) and `records`
//! (key: record id), both holding JSON text. [`Db::save_story`] writes a story and its records
//! in one transaction and resolves only once the transaction has committed.

use std::rc::Rc;

use js_sys::{Array, Promise};
use serde::{Deserialize, Serialize};
use wasm_bindgen::prelude::*;
use wasm_bindgen::JsCast;
use wasm_bindgen_futures::JsFuture;
use web_sys::{EventTarget, IdbDatabase, IdbRequest, IdbTransaction, IdbTransactionMode};

use crate::data::records::CandidateRecord;
use crate::data::story::Story;
use crate::web::error::{Context, Error, Result};

const DB_NAME: &str = "storywriter";
const STORIES: &str = "stories";
const RECORDS: &str = "records";

/// A story as stored: its title, when it last changed, and the story itself.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct StoredStory {
    /// The title the writer gave it (the opening's first words by default).
    pub title: String,
    /// When it last changed (RFC 3339).
    pub updated_at: String,
    /// The story, records included.
    pub story: Story,
}

/// The open database.
#[derive(Clone)]
pub struct Db {
    db: IdbDatabase,
}

/// An event listener owned by Rust (freed when dropped).
type Listener = Closure<dyn FnMut(web_sys::Event)>;

/// The outcome of a request or a transaction, listened for from creation until it is awaited.
/// The listeners are removed and freed with it, whichever event fired (a listener that never
/// runs must not keep the request, and with it its result, alive).
struct Outcome {
    target: EventTarget,
    promise: Promise,
    listeners: Vec<(&'static str, Listener)>,
}

impl Outcome {
    /// Resolves with `value()` on the event `ok`, rejects with `message()` on any of `failures`.
    fn new(
        target: &EventTarget,
        ok: &'static str,
        failures: &[&'static str],
        value: impl Fn() -> JsValue + 'static,
        message: impl Fn() -> String + 'static,
    ) -> Self {
        let mut listeners = vec![];
        let (mut value, mut message) = (Some(value), Some(message));
        let promise = Promise::new(&mut |resolve, reject| {
            let value = value.take().expect("a promise's executor runs once");
            let on_ok = Listener::new(move |_: web_sys::Event| {
                let _ = resolve.call1(&JsValue::NULL, &value());
            });
            listeners.push((ok, on_ok));
            let message: Rc<dyn Fn() -> String> =
                Rc::new(message.take().expect("a promise's executor runs once"));
            for &failure in failures {
                let (reject, message) = (reject.clone(), message.clone());
                let on_failed = Listener::new(move |_: web_sys::Event| {
                    let _ = reject.call1(&JsValue::NULL, &JsValue::from_str(&message()));
                });
                listeners.push((failure, on_failed));
            }
        });
        for (event, listener) in &listeners {
            let _ =
                target.add_event_listener_with_callback(event, listener.as_ref().unchecked_ref());
        }
        Self {
            target: target.clone(),
            promise,
            listeners,
        }
    }

    /// A request's result (`success`) or error.
    fn of_request(request: &IdbRequest) -> Self {
        let (done, failed) = (request.clone(), request.clone());
        Self::new(
            request,
            "success",
            &["error"],
            move || done.result().unwrap_or(JsValue::UNDEFINED),
            move || {
                failed
                    .error()
                    .ok()
                    .flatten()
                    .map(|e| e.message())
                    .unwrap_or_else(|| "IndexedDB request failed".into())
            },
        )
    }

    /// A transaction's commit (`complete`), or its error or abort.
    fn of_transaction(transaction: &IdbTransaction) -> Self {
        let failed = transaction.clone();
        Self::new(
            transaction,
            "complete",
            &["error", "abort"],
            || JsValue::UNDEFINED,
            move || {
                failed
                    .error()
                    .map(|e| e.message())
                    .unwrap_or_else(|| "IndexedDB transaction failed".into())
            },
        )
    }

    /// Waits for the outcome.
    async fn wait(self) -> Result<JsValue> {
        Ok(JsFuture::from(self.promise.clone()).await?)
    }
}

impl Drop for Outcome {
    fn drop(&mut self) {
        for (event, listener) in &self.listeners {
            let _ = self
                .target
                .remove_event_listener_with_callback(event, listener.as_ref().unchecked_ref());
        }
    }
}

fn texts(value: JsValue) -> Vec<String> {
    Array::from(&value)
        .iter()
        .filter_map(|v| v.as_string())
        .collect()
}

impl Db {
    /// Opens (and on first use creates) the database.
    pub async fn open() -> Result<Db> {
        let factory = crate::web::dom::window()
            .indexed_db()?
            .ok_or_else(|| Error::Other("this browser offers no IndexedDB".into()))?;
        let request = factory.open_with_u32(DB_NAME, 1)?;
        let upgrade = Closure::<dyn FnMut(web_sys::IdbVersionChangeEvent)>::new(
            move |event: web_sys::IdbVersionChangeEvent| {
                let request: web_sys::IdbOpenDbRequest = event
                    .target()
                    .expect("an upgrade event has a target")
                    .unchecked_into();
                let db: IdbDatabase = request
                    .result()
                    .expect("an upgrading request has a database")
                    .unchecked_into();
                for store in [STORIES, RECORDS] {
                    if !db.object_store_names().contains(store) {
                        db.create_object_store(store)
                            .expect("creating an object store during an upgrade works");
                    }
                }
            },
        );
        request.set_onupgradeneeded(Some(upgrade.as_ref().unchecked_ref()));
        let db = Outcome::of_request(&request).wait().await?;
        drop(upgrade);
        Ok(Db {
            db: db.unchecked_into(),
        })
    }

    fn transaction(&self, mode: IdbTransactionMode) -> Result<IdbTransaction> {
        let stores = Array::of2(&STORIES.into(), &RECORDS.into());
        Ok(self
            .db
            .transaction_with_str_sequence_and_mode(&stores, mode)?)
    }

    /// Writes the story and all its records; resolves once the transaction has committed.
    pub async fn save_story(&self, stored: &StoredStory) -> Result<()> {
        let transaction = self.transaction(IdbTransactionMode::Readwrite)?;
        let done = Outcome::of_transaction(&transaction);
        let stories = transaction.object_store(STORIES)?;
        let json = serde_json::to_string(stored)?;
        stories.put_with_key(&json.into(), &stored.story.id.as_str().into())?;
        let records = transaction.object_store(RECORDS)?;
        for record in &stored.story.records {
            let json = serde_json::to_string(record)?;
            records.put_with_key(&json.into(), &record.record_id.as_str().into())?;
        }
        done.wait().await?;
        Ok(())
    }

    /// Every stored story; entries that do not parse are skipped and named in the errors.
    pub async fn stories(&self) -> Result<(Vec<StoredStory>, Vec<String>)> {
        let transaction = self.transaction(IdbTransactionMode::Readonly)?;
        let request = transaction.object_store(STORIES)?.get_all()?;
        let values = texts(Outcome::of_request(&request).wait().await?);
        let mut stories = vec![];
        let mut errors = vec![];
        for (index, text) in values.iter().enumerate() {
            match serde_json::from_str::<StoredStory>(text) {
                Ok(story) => stories.push(story),
                Err(e) => errors.push(format!("stored story {}: {e}", index + 1)),
            }
        }
        stories.sort_by(|a, b| b.updated_at.cmp(&a.updated_at));
        Ok((stories, errors))
    }

    /// The stored story `id`, if there is one.
    pub async fn story(&self, id: &str) -> Result<Option<StoredStory>> {
        let transaction = self.transaction(IdbTransactionMode::Readonly)?;
        let request = transaction
            .object_store(STORIES)?
            .get(&JsValue::from_str(id))?;
        let value = Outcome::of_request(&request).wait().await?;
        let Some(text) = value.as_string() else {
            return Ok(None);
        };
        serde_json::from_str(&text)
            .map(Some)
            .context(format!("stored story {id}"))
    }

    /// Every stored candidate record (of every story).
    pub async fn records(&self) -> Result<(Vec<CandidateRecord>, Vec<String>)> {
        let transaction = self.transaction(IdbTransactionMode::Readonly)?;
        let request = transaction.object_store(RECORDS)?.get_all()?;
        let values = texts(Outcome::of_request(&request).wait().await?);
        let (records, errors) =
            crate::data::dataset::parse_records(&values.join("\n"), "IndexedDB records");
        Ok((records, errors.iter().map(ToString::to_string).collect()))
    }

    /// Deletes a story and its records.
    pub async fn delete_story(&self, story: &Story) -> Result<()> {
        let transaction = self.transaction(IdbTransactionMode::Readwrite)?;
        let done = Outcome::of_transaction(&transaction);
        transaction
            .object_store(STORIES)?
            .delete(&story.id.as_str().into())?;
        let records = transaction.object_store(RECORDS)?;
        for record in &story.records {
            records.delete(&record.record_id.as_str().into())?;
        }
        done.wait().await?;
        Ok(())
    }
}
