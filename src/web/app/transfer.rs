//! Export and import: every stored record downloaded as a Hugging Face dataset (records,
//! preference pairs, dataset card), and JSONL files of records merged into the stored stories.

use std::rc::Rc;

use wasm_bindgen_futures::{spawn_local, JsFuture};
use web_sys::{HtmlElement, HtmlInputElement};

use super::story_list::read_story;
use super::{click, default_title, with_app, App};
use crate::data::dataset::{parse_records, DatasetFiles, Merger};
use crate::data::records::{timestamp_now, CandidateRecord};
use crate::data::story::Story;
use crate::web::dom::{append, by_testid, clear, download, el, input, on, text_el};
use crate::web::error::{Context, Error, Result};
use crate::web::idb::StoredStory;

/// The import field and the import report (the export button has only a listener).
pub(super) struct Transfer {
    import: HtmlInputElement,
    report: HtmlElement,
}

impl Transfer {
    /// Finds the nodes.
    pub(super) fn new() -> Self {
        Self {
            import: input("import"),
            report: by_testid("import-report"),
        }
    }

    /// Installs the export button's and the import field's listeners.
    pub(super) fn wire(&self, app: &Rc<App>) {
        click(app, &by_testid("export"), |app| {
            let app = app.clone();
            spawn_local(async move {
                match export(&app).await {
                    Ok(done) => app.notice(&done),
                    Err(e) => app.notice(&e.to_string()),
                }
            });
        });
        let changed = with_app(app, |app, _: web_sys::Event| {
            if let Some(files) = app.transfer.import.files() {
                let app = app.clone();
                spawn_local(async move {
                    app.transfer.import(&app, files).await;
                    app.transfer.import.set_value("");
                });
            }
        });
        on(&self.import, "change", changed);
    }

    /// Merges the records of `files` into the stored stories and reports what came of it.
    async fn import(&self, app: &Rc<App>, files: web_sys::FileList) {
        let mut incoming = vec![];
        let mut errors = vec![];
        for file in (0..files.length()).filter_map(|i| files.get(i)) {
            match JsFuture::from(file.text()).await {
                Ok(text) => {
                    let text = text.as_string().unwrap_or_default();
                    let (records, bad) = parse_records(&text, &file.name());
                    incoming.extend(records);
                    errors.extend(bad.iter().map(ToString::to_string));
                }
                Err(e) => errors.push(format!(
                    "{}: could not be read: {}",
                    file.name(),
                    Error::from(e)
                )),
            }
        }
        let Some(db) = app.db() else {
            return app.notice("Import needs IndexedDB, which this browser does not offer.");
        };
        let (existing, _) = db.records().await.unwrap_or_default();
        let mut merger = Merger::new(existing);
        for record in incoming.iter().cloned() {
            merger.add(record);
        }
        let report = merger.finish();
        // Every story the imported records belong to, rebuilt from all its merged records; a
        // story already here keeps its text, title and path and gains the new records.
        let mut story_ids: Vec<&str> = incoming.iter().map(|r| r.story_id.as_str()).collect();
        story_ids.sort_unstable();
        story_ids.dedup();
        let mut saved = 0;
        for story_id in story_ids {
            let records: Vec<CandidateRecord> = report
                .records
                .iter()
                .filter(|r| r.story_id == story_id)
                .cloned()
                .collect();
            let held = read_story(app, &db, story_id).await;
            let Some(stored) = merged_story(story_id, held, &records) else {
                if let Err(e) = db.save_records(&records).await {
                    errors.push(format!("story {story_id}: its records were not saved: {e}"));
                    continue;
                }
                errors.push(format!(
                    "story {story_id}: no record of its first step, so its opening is unknown; its records are kept for export only"
                ));
                continue;
            };
            if app.save(&stored).await {
                saved += 1;
            }
        }
        clear(&self.report);
        let summary = format!(
            "Imported {} records: {} new, {} already here, {} updated, {} conflicting (kept ours); {saved} stories saved. {} problem(s).",
            incoming.len(),
            report.added,
            report.duplicates,
            report.updated.len(),
            report.conflicts.len(),
            errors.len()
        );
        append(&self.report, &text_el("p", "", &summary));
        let list = el("ul", "report");
        for conflict in &report.conflicts {
            let line = format!(
                "record {}: differs in {}; the stored one was kept",
                conflict.record_id,
                conflict.fields.join(", ")
            );
            append(&list, &text_el("li", "", &line));
        }
        for error in &errors {
            append(&list, &text_el("li", "", error));
        }
        append(&self.report, &list);
        // Refresh the open story: it may have gained records.
        let current_id = app.current_id();
        if let Some(id) = current_id {
            app.state.borrow_mut().current = read_story(app, &db, &id).await;
        }
        app.render_all();
    }
}

/// Downloads the dataset files of every stored record; says what was exported.
async fn export(app: &App) -> Result<String> {
    let Some(db) = app.db() else {
        return Ok("Nothing to export: IndexedDB is not available.".into());
    };
    let (records, _) = db.records().await.context("Export failed")?;
    let files = DatasetFiles::build(&records);
    for (name, text) in files.files() {
        let mime = if name.ends_with(".md") {
            "text/markdown"
        } else {
            "application/jsonl"
        };
        download(name, mime, text).context(format!("Export of {name} failed"))?;
    }
    Ok(format!(
        "Exported {} records and {} preference pairs.",
        records.len(),
        files.pairs
    ))
}

/// The story `story_id` with the merged `records`: the one `held` here gains them, a new one
/// is rebuilt from them (`None` without a record of its first step).
fn merged_story(
    story_id: &str,
    held: Option<StoredStory>,
    records: &[CandidateRecord],
) -> Option<StoredStory> {
    match held {
        Some(mut held) => {
            let mut merger = Merger::new(std::mem::take(&mut held.story.records));
            for record in records {
                merger.add(record.clone());
            }
            held.story.records = merger.finish().records;
            held.story.share_inputs();
            Some(held)
        }
        None => Story::from_records(story_id, records).map(|story| StoredStory {
            title: default_title(&story.text),
            updated_at: timestamp_now(),
            story,
            revision: 0,
            saved_by: String::new(),
        }),
    }
}
