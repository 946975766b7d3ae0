//! A reload's `[[feeds]]` changes, applied while the daemon runs: an added feed starts, a
//! removed one stops and its decisions (or tags) are lifted, a changed one restarts (from
//! scratch when its URL or format changed: the last good copy was another list's).

use tokio::sync::mpsc;

use super::state::State;
use crate::{
    config::{FeedConfig, FeedUse},
    decision::{Holder, Origin},
    engine::SourceEvent,
    feeds,
};

impl State {
    /// Where started feeds send their sets; set once the daemon's sources run. Without it
    /// (the engine alone, in tests) a reload names feed changes as applying at the next start.
    pub fn set_feed_events(&mut self, events: mpsc::Sender<SourceEvent>) {
        self.feed_events = Some(events);
    }

    /// Applies the difference between two `[[feeds]]` lists; what it did, for the reload's
    /// answer (`None`: nothing changed). `Err` names what could not be applied.
    pub(super) fn reload_feeds(
        &mut self,
        old: &[FeedConfig],
        new: &[FeedConfig],
    ) -> Result<Option<String>, String> {
        let Some(events) = self.feed_events.clone() else {
            return Err("no running sources".into());
        };
        let state_dir = self.engine.config().daemon.state_dir.clone();
        let find = |list: &[FeedConfig], name: &str| list.iter().find(|f| f.name == name).cloned();
        let (mut started, mut stopped, mut restarted, mut failed) =
            (Vec::new(), Vec::new(), Vec::new(), Vec::new());
        for was in old {
            let now = find(new, &was.name);
            if now.as_ref() == Some(was) {
                continue;
            }
            self.sources.stop_one(&feeds::source_name(&was.name));
            let same_use = now
                .as_ref()
                .is_some_and(|n| n.use_ == was.use_ && n.tag == was.tag);
            if !same_use {
                self.lift_feed(was);
            }
            if now
                .as_ref()
                .is_none_or(|n| n.url != was.url || n.format != was.format)
            {
                feeds::forget_copy(&state_dir, &was.name);
            }
            if now.is_none() {
                self.removed_feeds.insert(was.name.clone());
                stopped.push(was.name.clone());
            }
        }
        for feed in new {
            let was = find(old, &feed.name);
            if was.as_ref() == Some(feed) {
                continue;
            }
            match feed.spawn(&state_dir, events.clone()) {
                Ok(source) => {
                    self.removed_feeds.remove(&feed.name);
                    self.sources.push(source);
                    if was.is_some() {
                        restarted.push(feed.name.clone());
                    } else {
                        started.push(feed.name.clone());
                    }
                }
                Err(e) => failed.push(format!("{}: {}", feed.name, crate::engine::error_chain(&e))),
            }
        }
        if !failed.is_empty() {
            return Err(format!("could not start {}", failed.join(", ")));
        }
        let mut parts = Vec::new();
        for (what, names) in [
            ("started", started),
            ("stopped and lifted", stopped),
            ("restarted", restarted),
        ] {
            if !names.is_empty() {
                parts.push(format!("{what} {}", names.join(", ")));
            }
        }
        Ok((!parts.is_empty()).then(|| format!("feeds: {}", parts.join("; "))))
    }

    /// Withdraws what a feed that stops (or changes its use) put in force: its decisions, or
    /// its tags.
    fn lift_feed(&mut self, feed: &FeedConfig) {
        // Straight to the policy or the engine: `State::apply` drops sets of removed feeds,
        // this withdrawal included.
        if let (FeedUse::Tag, Some(tag)) = (feed.use_, feed.tag) {
            self.policy.set_tags(feed.name.clone(), tag, Vec::new());
            tracing::info!(
                feed = feed.name,
                "feed removed by a reload; its tags are lifted"
            );
            return;
        }
        let event = SourceEvent::Replace {
            holder: Holder::named(Origin::Feed, feed.name.clone()),
            decisions: Vec::new(),
        };
        match self.engine.apply(event) {
            Ok(applied) => tracing::info!(
                feed = feed.name,
                lifted = applied.withdrawn,
                "feed removed by a reload; what it held is lifted"
            ),
            Err(e) => tracing::warn!(
                feed = feed.name,
                error = %crate::engine::error_chain(&e),
                "lifting a removed feed's decisions"
            ),
        }
    }
}
