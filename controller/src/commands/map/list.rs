//! `ipwarden map list`.

use ipwarden::{
    cli::{Format, Target},
    output::{BlockView, table},
};
use serde::Serialize;

#[derive(Serialize)]
struct ListView {
    blocks: Vec<BlockView>,
}

pub fn run(target: &Target, format: Format) -> anyhow::Result<()> {
    let dp = crate::commands::pins::open(target)?;
    let blocks: Vec<BlockView> = dp.blocks()?.iter().map(BlockView::from).collect();
    if format.json {
        return crate::commands::print::print_json(&ListView { blocks });
    }
    let rows: Vec<Vec<String>> = blocks
        .iter()
        .map(|b| {
            let expires = match (b.expires_in_secs, b.expired) {
                (_, true) => "expired".to_owned(),
                (None, _) => "never".to_owned(),
                (Some(s), _) => {
                    humantime::format_duration(std::time::Duration::from_secs(s)).to_string()
                }
            };
            vec![b.prefix.clone(), b.action.into(), b.reason.into(), expires]
        })
        .collect();
    print!(
        "{}",
        table(&["PREFIX", "ACTION", "ORIGIN", "EXPIRES IN"], &rows)
    );
    Ok(())
}
