//! `ipwarden map stats`.

use ipwarden::{
    cli::StatsArgs,
    output::{SourceView, StatsView, counters_by_name, table},
};

pub fn run(args: &StatsArgs) -> anyhow::Result<()> {
    let dp = crate::commands::pins::open(&args.target)?;
    let globals = dp.globals()?;
    let v4 = dp.sources_v4()?;
    let v6 = dp.sources_v6()?;
    let mut top: Vec<SourceView> = v4.iter().map(SourceView::from).collect();
    top.extend(v6.iter().map(SourceView::from));
    top.sort_by(|a, b| {
        b.packets
            .cmp(&a.packets)
            .then_with(|| a.source.cmp(&b.source))
    });
    top.truncate(args.top);
    let view = StatsView {
        iface: args.target.iface.clone(),
        monitor: dp.monitor()?,
        counters: counters_by_name(&globals),
        tracked_v4: v4.len(),
        tracked_v6: v6.len(),
        top,
    };
    if args.format.json {
        return crate::commands::print::print_json(&view);
    }
    println!(
        "{}{}: {} IPv4 sources and {} IPv6 /64s tracked",
        view.iface,
        if view.monitor { " (monitor mode)" } else { "" },
        view.tracked_v4,
        view.tracked_v6
    );
    let rows: Vec<Vec<String>> = view
        .counters
        .iter()
        .map(|(k, v)| vec![(*k).to_owned(), v.to_string()])
        .collect();
    print!("{}", table(&["COUNTER", "FRAMES"], &rows));
    let rows: Vec<Vec<String>> = view
        .top
        .iter()
        .map(|s| {
            vec![
                s.source.clone(),
                s.packets.to_string(),
                s.bytes.to_string(),
                s.syn.to_string(),
                format!("{}s", s.first_seen_secs_ago),
            ]
        })
        .collect();
    println!();
    print!(
        "{}",
        table(&["SOURCE", "PACKETS", "BYTES", "SYN", "FIRST SEEN"], &rows)
    );
    Ok(())
}
