//! The fleet kit in assets/: the Grafana dashboard and the Prometheus alerting rules.
//! Every PromQL expression in them must parse (with `promql-parser`, as Prometheus's
//! own grammar), and every metric they name must be in a real scrape of `--serve`, in
//! a lab with a SYN flood, a CLOSE_WAIT socket and a new connection, so that the series that exist only
//! while there is trouble are there too. A renamed metric fails here, not on a
//! dashboard that silently goes blank.

use std::collections::BTreeSet;

use anyhow::{Context, Result, bail, ensure};
use promql_parser::parser::{self, Expr};
use promql_parser::util::{ExprVisitor, walk_expr};
use serde_json::Value;

use crate::support::lab::{Lab, SETTLE};
use crate::support::scrape::Server;

const DASHBOARD: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/assets/grafana-dashboard.json");
const ALERTS: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/assets/prometheus-alerts.yml");

/// Series that Prometheus makes itself for each target, not tcpscope.
const PROMETHEUS_OWN: &[&str] = &["up"];

/// Collects the metric names an expression selects.
#[derive(Default)]
struct Names(BTreeSet<String>);

impl ExprVisitor for Names {
    type Error = String;

    fn pre_visit(&mut self, expr: &Expr) -> Result<bool, String> {
        let selector = match expr {
            Expr::VectorSelector(selector) => selector,
            Expr::MatrixSelector(matrix) => &matrix.vs,
            _ => return Ok(true),
        };
        let name = selector.name.clone().or_else(|| {
            selector
                .matchers
                .matchers
                .iter()
                .find(|matcher| matcher.name == "__name__")
                .map(|matcher| matcher.value.clone())
        });
        match name {
            Some(name) => {
                self.0.insert(name);
                Ok(true)
            }
            None => Err(format!("a selector without a metric name: {selector}")),
        }
    }
}

/// The metric names in `expr`, which must parse. Grafana's `$__rate_interval` is
/// replaced by a duration first, as Grafana does before it sends the query.
fn names_in(expr: &str, names: &mut Names) -> Result<()> {
    let query = expr.replace("$__rate_interval", "1m");
    let ast = parser::parse(&query).map_err(|error| anyhow::anyhow!("{error}: {expr}"))?;
    walk_expr(names, &ast).map_err(|error| anyhow::anyhow!("{error}: {expr}"))?;
    Ok(())
}

/// Every `expr` of the dashboard's panels, and the metric of its instance variable.
fn dashboard_metrics() -> Result<BTreeSet<String>> {
    let text = std::fs::read_to_string(DASHBOARD)?;
    let dashboard: Value = serde_json::from_str(&text).context("the dashboard is no JSON")?;
    ensure!(dashboard["title"].is_string() && dashboard["uid"].is_string());
    ensure!(dashboard["schemaVersion"].as_u64().is_some_and(|v| v >= 30));
    let panels = dashboard["panels"].as_array().context("no panels")?;
    let mut names = Names::default();
    let mut ids = BTreeSet::new();
    let mut expressions = 0;
    for panel in panels {
        let title = panel["title"].as_str().context("a panel without a title")?;
        ensure!(
            ids.insert(panel["id"].as_u64()),
            "{title}: a panel id twice"
        );
        ensure!(
            panel["gridPos"]["w"].as_u64().is_some(),
            "{title}: no gridPos"
        );
        let targets = panel["targets"].as_array().context("no targets")?;
        ensure!(!targets.is_empty(), "{title}: no query");
        for target in targets {
            let expr = target["expr"].as_str().context("a target without expr")?;
            names_in(expr, &mut names).with_context(|| format!("panel {title}"))?;
            expressions += 1;
        }
    }
    ensure!(expressions >= 10, "only {expressions} queries");
    // A Grafana variable query, `label_values(METRIC, LABEL)`, is no PromQL: its metric
    // is checked all the same.
    for variable in dashboard["templating"]["list"]
        .as_array()
        .into_iter()
        .flatten()
    {
        if let Some(query) = variable["definition"].as_str()
            && let Some(inner) = query.strip_prefix("label_values(")
        {
            let metric = inner.split([',', ')']).next().unwrap_or_default().trim();
            names_in(metric, &mut names)?;
        }
    }
    Ok(names.0)
}

/// Every `expr` of every rule in the alerting rules file.
fn alert_metrics() -> Result<BTreeSet<String>> {
    let text = std::fs::read_to_string(ALERTS)?;
    let rules: serde_yaml_ng::Value = serde_yaml_ng::from_str(&text)?;
    let mut names = Names::default();
    let mut alerts = BTreeSet::new();
    for group in rules["groups"].as_sequence().context("no groups")? {
        for rule in group["rules"].as_sequence().context("no rules")? {
            let alert = rule["alert"].as_str().context("a rule that is no alert")?;
            ensure!(alerts.insert(alert.to_owned()), "{alert} twice");
            let expr = rule["expr"].as_str().context("a rule without expr")?;
            names_in(expr, &mut names).with_context(|| format!("alert {alert}"))?;
            if let Some(wait) = rule["for"].as_str() {
                promql_parser::util::parse_duration(wait)
                    .map_err(|error| anyhow::anyhow!("alert {alert}: for: {error}"))?;
            }
            ensure!(
                rule["labels"]["severity"].as_str().is_some()
                    && rule["annotations"]["summary"].as_str().is_some(),
                "{alert}: no severity or summary"
            );
        }
    }
    for wanted in [
        "SynFlood",
        "ListenerDrops",
        "CloseWaitLeak",
        "FindingCritical",
        "Down",
    ] {
        ensure!(
            alerts.iter().any(|alert| alert.contains(wanted)),
            "no alert for {wanted}: {alerts:?}"
        );
    }
    Ok(names.0)
}

/// The metric names of a scrape's samples, read from its text.
fn scraped_names(text: &str) -> BTreeSet<String> {
    text.lines()
        .filter(|line| !line.starts_with('#') && !line.is_empty())
        .filter_map(|line| line.split(['{', ' ']).next())
        .map(str::to_owned)
        .collect()
}

#[test]
fn every_query_of_the_dashboard_and_the_alerts_parses_and_names_a_scraped_metric() -> Result<()> {
    let mut wanted = dashboard_metrics()?;
    wanted.extend(alert_metrics()?);

    let lab = Lab::enter()?;
    let v4 = "127.0.0.1".parse()?;
    let listener = lab.listener_v4()?;
    let flood = lab.syn_flood(listener.addr_v4()?, 300, 7)?;
    let half_closed = lab.fin_wait2_close_wait(v4)?;
    lab.wait_for_exactly(
        &[listener.entries(), flood.entries(), half_closed.entries()].concat(),
        SETTLE,
    )?;
    let server = Server::start("[::1]:0", &["-4", "--interval", "200ms"])?;
    // A connection made while it polls: transitions are counted from the second poll.
    let _established = lab.established(v4)?;
    let metrics = server.wait_for("a finding, a CLOSE_WAIT port and transitions", |metrics| {
        [
            "tcpscope_finding",
            "tcpscope_close_wait_sockets",
            "tcpscope_transitions_total",
        ]
        .iter()
        .all(|name| metrics.samples(name, &[]).count() > 0)
    })?;
    let scraped = scraped_names(&metrics.text);

    let missing: Vec<&String> = wanted
        .iter()
        .filter(|name| !scraped.contains(*name) && !PROMETHEUS_OWN.contains(&name.as_str()))
        .collect();
    if !missing.is_empty() {
        bail!("named in assets/ but not scraped: {missing:?}\nscraped: {scraped:?}");
    }
    Ok(())
}

#[test]
fn a_misspelt_metric_or_a_broken_query_is_caught() {
    let mut names = Names::default();
    assert!(names_in("rate(tcpscope_polls_total[5m]", &mut names).is_err());
    assert!(names_in("sum by (state) (tcpscope_connection)", &mut names).is_ok());
    let scraped = scraped_names(
        "# TYPE tcpscope_connections gauge\ntcpscope_connections{state=\"LISTEN\"} 1\n",
    );
    assert!(!scraped.contains("tcpscope_connection"));
    assert!(scraped.contains("tcpscope_connections"));
}
