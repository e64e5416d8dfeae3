//! Other tabs of the app on the same story. After each save the page announces the story's id
//! and revision on a `BroadcastChannel`; a page showing that story at an older revision, and
//! not writing a round, reads it again, so it shows the other tab's picks at once. A page that
//! misses the message (a browser without `BroadcastChannel`, a message still on its way) is
//! still safe: `idb::Db::save_story` refuses its save, and it then reads the story again.

use std::rc::Rc;

use serde::{Deserialize, Serialize};
use wasm_bindgen_futures::spawn_local;

use super::{story_list, with_app, App};
use crate::web::dom::on;

/// The channel's name, shared by every page of the origin.
const CHANNEL: &str = "storywriter-stories";

/// The announcement of a save.
#[derive(Serialize, Deserialize)]
struct Saved {
    /// The story's id.
    story: String,
    /// The revision written.
    revision: u64,
}

/// The page's end of the channel (`None` where the browser has no `BroadcastChannel`).
pub(super) struct Tabs {
    channel: Option<web_sys::BroadcastChannel>,
}

impl Tabs {
    pub(super) fn new() -> Self {
        Self {
            channel: web_sys::BroadcastChannel::new(CHANNEL).ok(),
        }
    }

    /// Reads the open story again when another page announces a later revision of it.
    pub(super) fn wire(&self, app: &Rc<App>) {
        let Some(channel) = &self.channel else {
            return;
        };
        let on_message = with_app(app, |app, event: web_sys::MessageEvent| {
            let text = event.data().as_string().unwrap_or_default();
            if let Ok(saved) = serde_json::from_str::<Saved>(&text) {
                spawn_local(reload(app.clone(), saved));
            }
        });
        on::<web_sys::MessageEvent>(channel, "message", on_message);
    }

    /// Tells the other pages that `story` was saved at `revision`.
    pub(super) fn announce(&self, story: &str, revision: u64) {
        let Some(channel) = &self.channel else {
            return;
        };
        let saved = Saved {
            story: story.to_string(),
            revision,
        };
        if let Ok(text) = serde_json::to_string(&saved) {
            let _ = channel.post_message(&text.into());
        }
    }
}

/// Shows the stored version of `saved.story` when it is the open story, older here, and no
/// round is being written.
async fn reload(app: Rc<App>, saved: Saved) {
    let stale = |app: &App| {
        !app.writing.running()
            && app.state.borrow().current.as_ref().is_some_and(|current| {
                current.story.id == saved.story && current.revision < saved.revision
            })
    };
    if !stale(&app) {
        return;
    }
    let Some(db) = app.db() else {
        return;
    };
    let Some(fresh) = story_list::read_story(&app, &db, &saved.story).await else {
        return;
    };
    if !stale(&app) {
        return;
    }
    app.state.borrow_mut().current = Some(fresh);
    app.render_all();
    app.notice("This story was changed in another tab: it now shows the picks made there.");
    app.stories.refresh(&app).await;
}
