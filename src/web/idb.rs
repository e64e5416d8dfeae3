//! The page's IndexedDB store: each story's header (title, text, path; no records) and its
//! candidate records, each written once and again only when it changes.
//!
//! Database `storywriter`, version 2. Object stores: `story_headers` (key: story id; JSON of
//! the story without its records) and `story_records` (key: `[story id, record id]`, so one
//! key range reads a story's records; JSON of [`StoredRecord`]: the input as what it adds to
//! the parent's, so storage grows linearly with a story). Version 1's `stories` (whole stories,
//! records included) and `records` are read once after the upgrade, rewritten in the new form,
//! and emptied. Writes resolve only once their transaction has committed.

use std::cell::RefCell;
use std::collections::hash_map::DefaultHasher;
use std::collections::{HashMap, HashSet};
use std::hash::{Hash, Hasher};
use std::rc::Rc;

use js_sys::{Array, Promise};
use serde::{Deserialize, Serialize};
use wasm_bindgen::prelude::*;
use wasm_bindgen::JsCast;
use wasm_bindgen_futures::JsFuture;
use web_sys::{
    EventTarget, IdbDatabase, IdbKeyRange, IdbObjectStore, IdbRequest, IdbTransaction,
    IdbTransactionMode,
};

use crate::data::dataset::parse_records;
use crate::data::records::CandidateRecord;
use crate::data::stored::{compact, expand, StoredRecord};
use crate::data::story::Story;
use crate::web::error::{Context, Error, Result};

const DB_NAME: &str = "storywriter";
const DB_VERSION: u32 = 2;
const HEADERS: &str = "story_headers";
const RECORDS: &str = "story_records";
/// Version 1's stores, migrated on first open.
const V1_STORIES: &str = "stories";
const V1_RECORDS: &str = "records";

/// A story as stored: its title, when it last changed, and the story itself.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct StoredStory {
    /// The title the writer gave it (the opening's first words by default).
    pub title: String,
    /// When it last changed (RFC 3339).
    pub updated_at: String,
    /// The story, records included.
    pub story: Story,
    /// How many times it was saved (0 for a story not saved yet, or saved before revisions
    /// were kept): a save from a page that read an older revision than the stored one, written
    /// by another page since, is refused ([`SaveError::ChangedElsewhere`]).
    #[serde(default)]
    pub revision: u64,
    /// The page (tab) that saved it last ([`Db::page`]).
    #[serde(default)]
    pub saved_by: String,
}

/// Why a story was not saved.
#[derive(Debug)]
pub enum SaveError {
    /// Another tab or window saved the story since this page read it: nothing was written, so
    /// that page's picks stay; the page should read the story again.
    ChangedElsewhere {
        /// When the other page saved it (RFC 3339).
        updated_at: String,
    },
    /// IndexedDB failed.
    Failed(Error),
}

impl std::fmt::Display for SaveError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            SaveError::ChangedElsewhere { updated_at } => write!(
                f,
                "this story was changed in another tab or window (saved there at {updated_at}) \
                 after this page read it; nothing was saved here, so the picks made there stay"
            ),
            SaveError::Failed(e) => e.fmt(f),
        }
    }
}

impl<E: Into<Error>> From<E> for SaveError {
    fn from(e: E) -> Self {
        SaveError::Failed(e.into())
    }
}

/// What the story list shows of a stored story.
#[derive(Clone, Debug, PartialEq)]
pub struct StoryEntry {
    /// The story's id.
    pub id: String,
    /// Its title.
    pub title: String,
    /// When it last changed (RFC 3339).
    pub updated_at: String,
}

/// The open database.
#[derive(Clone)]
pub struct Db {
    db: IdbDatabase,
    /// A hash of each record's stored JSON as last written or read, keyed by
    /// `story id/record id`: a save writes only the records whose JSON differs.
    written: Rc<RefCell<HashMap<String, u64>>>,
    /// This page's id, random, recorded as a story's `saved_by`.
    page: String,
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
        Self::of_request_or(request, &["error"], "IndexedDB request failed")
    }

    /// A request's result (`success`), or its error on any of `failures`; `fallback` is the
    /// message when the request holds no error (an event such as `blocked`).
    fn of_request_or(
        request: &IdbRequest,
        failures: &[&'static str],
        fallback: &'static str,
    ) -> Self {
        let (done, failed) = (request.clone(), request.clone());
        Self::new(
            request,
            "success",
            failures,
            move || done.result().unwrap_or(JsValue::UNDEFINED),
            move || {
                failed
                    .error()
                    .ok()
                    .flatten()
                    .map(|e| e.message())
                    .unwrap_or_else(|| fallback.into())
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
                failed.error().map_or_else(
                    || "IndexedDB transaction failed".into(),
                    |e| crate::web::error::transaction_error(&e.name(), &e.message()),
                )
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

fn hash_of(text: &str) -> u64 {
    let mut hasher = DefaultHasher::new();
    text.hash(&mut hasher);
    hasher.finish()
}

fn written_key(story_id: &str, record_id: &str) -> String {
    format!("{story_id}/{record_id}")
}

fn record_key(record: &CandidateRecord) -> Array {
    Array::of2(
        &record.story_id.as_str().into(),
        &record.record_id.as_str().into(),
    )
}

/// The key range of every record of story `id`: `[id]` up to `[id, []]` (arrays sort after
/// strings).
fn story_range(id: &str) -> Result<JsValue> {
    let range = IdbKeyRange::bound(
        &Array::of1(&id.into()),
        &Array::of2(&id.into(), &Array::new()),
    )?;
    Ok(range.into())
}

/// Parses stored records and rebuilds them story by story; what fails is named in the errors.
fn rebuild(
    values: &[String],
    what: &str,
    written: Option<&RefCell<HashMap<String, u64>>>,
) -> (Vec<CandidateRecord>, Vec<String>) {
    let mut by_story: HashMap<String, Vec<StoredRecord>> = HashMap::new();
    let mut errors = vec![];
    for (index, text) in values.iter().enumerate() {
        match serde_json::from_str::<StoredRecord>(text) {
            Ok(stored) => {
                if let Some(written) = written {
                    let key = written_key(&stored.record.story_id, &stored.record.record_id);
                    written.borrow_mut().insert(key, hash_of(text));
                }
                by_story
                    .entry(stored.record.story_id.clone())
                    .or_default()
                    .push(stored);
            }
            Err(e) => errors.push(format!("{what}, record {}: {e}", index + 1)),
        }
    }
    let mut records = vec![];
    for stored in by_story.into_values() {
        let (rebuilt, failed) = expand(stored);
        records.extend(rebuilt);
        errors.extend(failed.iter().map(ToString::to_string));
    }
    (records, errors)
}

impl Db {
    /// Opens (and on first use creates, or upgrades from version 1) the database; also returns
    /// what could not be migrated (left in place, never deleted).
    pub async fn open() -> Result<(Db, Vec<String>)> {
        let factory = crate::web::dom::window()
            .indexed_db()?
            .ok_or_else(|| Error::Other("this browser offers no IndexedDB".into()))?;
        let request = factory.open_with_u32(DB_NAME, DB_VERSION)?;
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
                for store in [HEADERS, RECORDS] {
                    if !db.object_store_names().contains(store) {
                        db.create_object_store(store)
                            .expect("creating an object store during an upgrade works");
                    }
                }
            },
        );
        request.set_onupgradeneeded(Some(upgrade.as_ref().unchecked_ref()));
        let opened = Outcome::of_request_or(
            &request,
            &["error", "blocked"],
            "another tab of this app holds an older version of its database open: close it and \
             reload this page",
        );
        let db: IdbDatabase = opened.wait().await?.unchecked_into();
        drop(upgrade);
        // A newer version opened in another tab waits for this one to close.
        let on_version_change = Closure::<dyn FnMut()>::new({
            let db = db.clone();
            move || db.close()
        });
        db.set_onversionchange(Some(on_version_change.as_ref().unchecked_ref()));
        on_version_change.forget(); // once per page: lives as long as the database connection
        let db = Db {
            db,
            written: Rc::default(),
            page: format!(
                "{:x}-{:x}",
                js_sys::Date::now() as u64,
                (js_sys::Math::random() * 2f64.powi(52)) as u64
            ),
        };
        let problems = db.migrate_v1().await?;
        Ok((db, problems))
    }

    fn transaction(&self, stores: &[&str], mode: IdbTransactionMode) -> Result<IdbTransaction> {
        let names: Array = stores.iter().map(|s| JsValue::from_str(s)).collect();
        Ok(self
            .db
            .transaction_with_str_sequence_and_mode(&names, mode)?)
    }

    /// Moves version 1's whole stories (and any record not in one) to the version-2 stores.
    async fn migrate_v1(&self) -> Result<Vec<String>> {
        let names = self.db.object_store_names();
        if !names.contains(V1_STORIES) || !names.contains(V1_RECORDS) {
            return Ok(vec![]);
        }
        let read = self.transaction(&[V1_STORIES, V1_RECORDS], IdbTransactionMode::Readonly)?;
        let (stories_store, records_store) = (
            read.object_store(V1_STORIES)?,
            read.object_store(V1_RECORDS)?,
        );
        let requests = [
            stories_store.get_all_keys()?,
            stories_store.get_all()?,
            records_store.get_all_keys()?,
            records_store.get_all()?,
        ];
        let mut results = vec![];
        for request in &requests {
            results.push(Outcome::of_request(request).wait().await?);
        }
        let (story_keys, stories) = (Array::from(&results[0]), texts(results[1].clone()));
        let (record_keys, records) = (Array::from(&results[2]), texts(results[3].clone()));
        if stories.is_empty() && records.is_empty() {
            return Ok(vec![]);
        }
        let mut problems = vec![];
        let mut moved: Vec<StoredStory> = vec![];
        let mut moved_stories = vec![];
        for (key, text) in story_keys.iter().zip(&stories) {
            match serde_json::from_str::<StoredStory>(text) {
                Ok(story) => {
                    moved.push(story);
                    moved_stories.push(key);
                }
                Err(e) => problems.push(format!("stored story (version 1) {key:?}: {e}")),
            }
        }
        let in_stories: HashSet<(&str, &str)> = moved
            .iter()
            .flat_map(|s| s.story.records.iter())
            .map(|r| (r.story_id.as_str(), r.record_id.as_str()))
            .collect();
        let mut loose = vec![];
        let mut moved_records = vec![];
        for (key, text) in record_keys.iter().zip(&records) {
            let (parsed, errors) = parse_records(text, "stored record (version 1)");
            problems.extend(errors.iter().map(ToString::to_string));
            if let Some(record) = parsed.into_iter().next() {
                if !in_stories.contains(&(record.story_id.as_str(), record.record_id.as_str())) {
                    loose.push(record);
                }
                moved_records.push(key);
            }
        }
        let all = [HEADERS, RECORDS, V1_STORIES, V1_RECORDS];
        let write = self.transaction(&all, IdbTransactionMode::Readwrite)?;
        let done = Outcome::of_transaction(&write);
        for stored in &moved {
            self.put_story(&write, stored, stored.revision)?;
        }
        self.put_records(&write.object_store(RECORDS)?, &compact(&loose))?;
        for key in moved_stories {
            write.object_store(V1_STORIES)?.delete(&key)?;
        }
        for key in moved_records {
            write.object_store(V1_RECORDS)?.delete(&key)?;
        }
        done.wait().await?;
        Ok(problems)
    }

    /// Queues the header and the changed records of `stored` in `transaction`; returns the
    /// hashes to remember once it commits.
    fn put_story(
        &self,
        transaction: &IdbTransaction,
        stored: &StoredStory,
        revision: u64,
    ) -> Result<Vec<(String, u64)>> {
        let header = StoredStory {
            title: stored.title.clone(),
            updated_at: stored.updated_at.clone(),
            revision,
            saved_by: self.page.clone(),
            story: Story {
                id: stored.story.id.clone(),
                text: stored.story.text.clone(),
                path: stored.story.path.clone(),
                pending: stored.story.pending.clone(),
                records: vec![],
            },
        };
        transaction.object_store(HEADERS)?.put_with_key(
            &serde_json::to_string(&header)?.into(),
            &stored.story.id.as_str().into(),
        )?;
        self.put_records(
            &transaction.object_store(RECORDS)?,
            &compact(&stored.story.records),
        )
    }

    /// Queues the records whose JSON differs from what was last written; returns their hashes.
    fn put_records(
        &self,
        store: &IdbObjectStore,
        records: &[StoredRecord],
    ) -> Result<Vec<(String, u64)>> {
        let mut changed = vec![];
        for stored in records {
            let json = serde_json::to_string(stored)?;
            let key = written_key(&stored.record.story_id, &stored.record.record_id);
            let hash = hash_of(&json);
            if self.written.borrow().get(&key) != Some(&hash) {
                store.put_with_key(&json.into(), &record_key(&stored.record))?;
                changed.push((key, hash));
            }
        }
        Ok(changed)
    }

    /// Writes the story's header and its new or changed records; resolves with the revision
    /// written once the transaction has committed. Refused, writing nothing, when another page
    /// saved a later revision than `stored.revision` (read in the same transaction, so two tabs
    /// cannot both pass the check).
    pub async fn save_story(&self, stored: &StoredStory) -> std::result::Result<u64, SaveError> {
        let transaction = self.transaction(&[HEADERS, RECORDS], IdbTransactionMode::Readwrite)?;
        let done = Outcome::of_transaction(&transaction);
        let request = transaction
            .object_store(HEADERS)?
            .get(&stored.story.id.as_str().into())?;
        // Awaited within the transaction: its success event's microtasks run while it is active.
        let current = Outcome::of_request(&request).wait().await?;
        // A stored header that does not parse is overwritten, as before revisions were kept.
        let current = current
            .as_string()
            .and_then(|text| serde_json::from_str::<StoredStory>(&text).ok());
        let mut revision = stored.revision;
        if let Some(current) = current {
            if current.revision > stored.revision && current.saved_by != self.page {
                transaction.abort()?;
                return Err(SaveError::ChangedElsewhere {
                    updated_at: current.updated_at,
                });
            }
            revision = revision.max(current.revision);
        }
        let changed = self.put_story(&transaction, stored, revision + 1)?;
        done.wait().await?;
        self.written.borrow_mut().extend(changed);
        Ok(revision + 1)
    }

    /// Writes records that belong to no stored story (kept for export).
    pub async fn save_records(&self, records: &[CandidateRecord]) -> Result<()> {
        let transaction = self.transaction(&[RECORDS], IdbTransactionMode::Readwrite)?;
        let done = Outcome::of_transaction(&transaction);
        let changed = self.put_records(&transaction.object_store(RECORDS)?, &compact(records))?;
        done.wait().await?;
        self.written.borrow_mut().extend(changed);
        Ok(())
    }

    /// The stored stories, newest first; headers that do not parse are named in the errors.
    pub async fn stories(&self) -> Result<(Vec<StoryEntry>, Vec<String>)> {
        let transaction = self.transaction(&[HEADERS], IdbTransactionMode::Readonly)?;
        let request = transaction.object_store(HEADERS)?.get_all()?;
        let values = texts(Outcome::of_request(&request).wait().await?);
        let mut entries = vec![];
        let mut errors = vec![];
        for (index, text) in values.iter().enumerate() {
            match serde_json::from_str::<StoredStory>(text) {
                Ok(header) => entries.push(StoryEntry {
                    id: header.story.id,
                    title: header.title,
                    updated_at: header.updated_at,
                }),
                Err(e) => errors.push(format!("stored story {}: {e}", index + 1)),
            }
        }
        entries.sort_by(|a, b| b.updated_at.cmp(&a.updated_at));
        Ok((entries, errors))
    }

    /// The stored story `id` with its records, if there is one, and the records that could
    /// not be read (named; they stay stored).
    pub async fn story(&self, id: &str) -> Result<Option<(StoredStory, Vec<String>)>> {
        let transaction = self.transaction(&[HEADERS, RECORDS], IdbTransactionMode::Readonly)?;
        let header = transaction.object_store(HEADERS)?.get(&id.into())?;
        let records = transaction
            .object_store(RECORDS)?
            .get_all_with_key(&story_range(id)?)?;
        let header = Outcome::of_request(&header).wait().await?;
        let records = texts(Outcome::of_request(&records).wait().await?);
        let Some(text) = header.as_string() else {
            return Ok(None);
        };
        let mut stored: StoredStory =
            serde_json::from_str(&text).context(format!("stored story {id}"))?;
        let (records, errors) =
            rebuild(&records, &format!("stored story {id}"), Some(&self.written));
        stored.story.records = records;
        Ok(Some((stored, errors)))
    }

    /// Every stored candidate record (of every story, and those kept for export only).
    pub async fn records(&self) -> Result<(Vec<CandidateRecord>, Vec<String>)> {
        let transaction = self.transaction(&[RECORDS], IdbTransactionMode::Readonly)?;
        let request = transaction.object_store(RECORDS)?.get_all()?;
        let values = texts(Outcome::of_request(&request).wait().await?);
        Ok(rebuild(&values, "IndexedDB records", None))
    }

    /// Deletes a story and its records.
    pub async fn delete_story(&self, id: &str) -> Result<()> {
        let transaction = self.transaction(&[HEADERS, RECORDS], IdbTransactionMode::Readwrite)?;
        let done = Outcome::of_transaction(&transaction);
        transaction.object_store(HEADERS)?.delete(&id.into())?;
        transaction
            .object_store(RECORDS)?
            .delete(&story_range(id)?)?;
        done.wait().await?;
        let prefix = written_key(id, "");
        self.written
            .borrow_mut()
            .retain(|key, _| !key.starts_with(&prefix));
        Ok(())
    }
}
