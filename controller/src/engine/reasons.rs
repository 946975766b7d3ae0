//! The reasons operator blocks give, made once per batch.

use crate::decision::{Holder, Text};

/// The reasons of a batch of operator blocks, each made once and shared by the decisions that
/// give it (a bulk load of a million blocks: one reason, not a million copies).
#[derive(Default)]
pub(super) struct Reasons {
    /// The default reasons, `"<origin> block"` and `"<origin> challenge"`.
    block: Option<Text>,
    challenge: Option<Text>,
    /// The last reason a request gave: runs of one reason share it.
    given: Option<Text>,
}

impl Reasons {
    pub(super) fn get(
        &mut self,
        given: Option<String>,
        holder: &Holder,
        what: &'static str,
    ) -> Text {
        if let Some(r) = given {
            return match &self.given {
                Some(last) if **last == *r => last.clone(),
                _ => self.given.insert(r.into()).clone(),
            };
        }
        let slot = if what == "challenge" {
            &mut self.challenge
        } else {
            &mut self.block
        };
        slot.get_or_insert_with(|| format!("{} {what}", holder.origin).into())
            .clone()
    }
}
