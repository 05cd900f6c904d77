using System.Text.RegularExpressions;
using YamlDotNet.RepresentationModel;

namespace Cdc.Tests.Operations;

/// <summary>
/// The chart's PrometheusRule (charts/cdc/templates/prometheusrule.yaml), rendered by the real helm. That every metric
/// and label value its expressions select is exported by a running worker is checked by
/// <see cref="DashboardTests.Every_metric_the_dashboard_and_the_alerts_query_is_exported_by_a_running_worker"/>.
/// </summary>
public class AlertRuleTests
{
    public static readonly string[] AlertNames =
    [
        "CdcNotStreaming", "CdcReplicationLagHigh", "CdcReplicationDelayHigh", "CdcSlotWalNearLimit", "CdcSlotLost",
        "CdcDeadLetters", "CdcDeliveryBlocked", "CdcStreamRestartsLooping",
    ];

    public sealed record Rule(string Group, string Alert, string Expr, YamlMappingNode Node);

    /// <summary>The alerting rules of the one PrometheusRule rendered.</summary>
    internal static List<Rule> Rules(Manifests manifests) =>
        manifests.Single("PrometheusRule").Maps("spec.groups")
            .SelectMany(g => g.Maps("rules").Select(r => new Rule(g.ScalarAt("name")!, r.ScalarAt("alert")!, r.ScalarAt("expr")!, r)))
            .ToList();

    /// <summary>The rules with every optional template on (charts/cdc/ci/all-values.yaml, as .ci/run renders it).</summary>
    public static List<Rule> AllValuesRules() => Rules(Helm.Template("-f", Helm.CiValues("all-values.yaml")));

    [Fact]
    public void Every_alert_is_rendered_with_its_threshold_window_and_duration_from_values()
    {
        var rules = AllValuesRules();
        Assert.Equal(AlertNames, rules.Select(r => r.Alert));
        Assert.Equal(["cdc.cdc"], rules.Select(r => r.Group).Distinct());
        var byName = rules.ToDictionary(r => r.Alert);

        // The defaults: values.yaml's thresholds (whole numbers printed whole, not 1.073741824e+09).
        Assert.EndsWith(") > 1073741824", byName["CdcReplicationLagHigh"].Expr);
        Assert.EndsWith(") > 300", byName["CdcReplicationDelayHigh"].Expr);
        Assert.Contains(") < 1073741824)", byName["CdcSlotWalNearLimit"].Expr);
        Assert.Contains("[1h]", byName["CdcSlotLost"].Expr);
        Assert.Contains("[10m]", byName["CdcDeadLetters"].Expr);
        Assert.Contains("[15m])) > 3", byName["CdcStreamRestartsLooping"].Expr);
        Assert.Equal(["5m", "10m", "10m", "5m", "0m", "0m", "5m", "0m"], rules.Select(r => r.Node.ScalarAt("for")));
        Assert.Equal(["critical", "warning", "warning", "warning", "critical", "warning", "critical", "warning"], rules.Select(r => r.Node.ScalarAt("labels.severity")));
        foreach (var rule in rules)
        {
            Assert.Equal("cdc_outbox", rule.Node.ScalarAt("labels.slot"));
            Assert.Equal("payments", rule.Node.ScalarAt("labels.team"));
            Assert.Contains("slot cdc_outbox", rule.Node.ScalarAt("annotations.summary"));
            Assert.False(string.IsNullOrWhiteSpace(rule.Node.ScalarAt("annotations.description")));
            Assert.Equal($"https://git.example.com/cdc/blob/main/charts/cdc/README.md#{rule.Alert.ToLowerInvariant()}", rule.Node.ScalarAt("annotations.runbook_url"));
        }

        // Set otherwise: each threshold, window and duration reaches its rule; a disabled alert is left out.
        var set = Rules(Helm.Template("-f", Helm.CiValues("all-values.yaml"),
            "--set", "prometheusRule.alerts.notStreaming.for=2m,prometheusRule.alerts.replicationLagBytes.threshold=5000000",
            "--set", "prometheusRule.alerts.replicationDelaySeconds.threshold=60,prometheusRule.alerts.replicationDelaySeconds.for=3m",
            "--set", "prometheusRule.alerts.walNearLimit.safeSizeBytes=123456,prometheusRule.alerts.slotLost.window=6h",
            "--set", "prometheusRule.alerts.deadLetters.window=30m,prometheusRule.alerts.deliveryBlocked.for=1m",
            "--set", "prometheusRule.alerts.restartsLooping.threshold=10,prometheusRule.alerts.restartsLooping.window=1h",
            "--set", "prometheusRule.alerts.deadLetters.severity=critical,prometheusRule.alerts.replicationLagBytes.enabled=false"))
            .ToDictionary(r => r.Alert);
        Assert.DoesNotContain("CdcReplicationLagHigh", set.Keys);
        Assert.Equal("2m", set["CdcNotStreaming"].Node.ScalarAt("for"));
        Assert.EndsWith(") > 60", set["CdcReplicationDelayHigh"].Expr);
        Assert.Equal("3m", set["CdcReplicationDelayHigh"].Node.ScalarAt("for"));
        Assert.Contains(") < 123456)", set["CdcSlotWalNearLimit"].Expr);
        Assert.Contains("[6h]", set["CdcSlotLost"].Expr);
        Assert.Contains("[30m]", set["CdcDeadLetters"].Expr);
        Assert.Equal("critical", set["CdcDeadLetters"].Node.ScalarAt("labels.severity"));
        Assert.Equal("1m", set["CdcDeliveryBlocked"].Node.ScalarAt("for"));
        Assert.Contains("[1h])) > 10", set["CdcStreamRestartsLooping"].Expr);
        var lag = Rules(Helm.Template("-f", Helm.CiValues("all-values.yaml"), "--set", "prometheusRule.alerts.replicationLagBytes.threshold=5000000"))
            .Single(r => r.Alert == "CdcReplicationLagHigh");
        Assert.EndsWith(") > 5000000", lag.Expr);
    }

    /// <summary>
    /// Each expression parses with Prometheus' grammar and selects only its connector's series (job = its Service,
    /// namespace = the release's), so one connector's trouble never fires another's alert.
    /// </summary>
    [Theory]
    [InlineData("all-values.yaml")]
    [InlineData("outboxes-values.yaml")]
    public void Every_expression_parses_and_selects_only_its_connectors_series(string valuesFile)
    {
        var manifests = Helm.Template("-f", Helm.CiValues(valuesFile));
        var rules = Rules(manifests);
        var services = manifests.OfKind("Service").Select(s => s.ScalarAt("metadata.name")!).ToList();
        // The Prometheus Operator labels a ServiceMonitor's series job=<Service name> unless the monitor sets jobLabel.
        Assert.Null(manifests.Single("ServiceMonitor").At("spec.jobLabel"));
        Assert.Equal(services.Select(s => $"cdc.{s}"), rules.Select(r => r.Group).Distinct());
        Assert.Equal(AlertNames.Length * services.Count, rules.Count);

        var parsed = PromQl.Parse(rules.Select(r => r.Expr).ToList());
        PromQl.AssertValid(rules.Select((r, i) => ($"{r.Group}/{r.Alert}", parsed[i])));
        foreach (var (rule, expression) in rules.Zip(parsed))
        {
            var service = rule.Group["cdc.".Length..];
            Assert.NotEmpty(expression.Selectors);
            foreach (var selector in expression.Selectors)
            {
                Assert.StartsWith("cdc_", selector.Metric);
                Assert.Contains(new PromQl.Matcher("job", "=", service), selector.Matchers);
                Assert.Contains(new PromQl.Matcher("namespace", "=", Helm.Namespace), selector.Matchers);
            }
            // Aggregations keep the labels the alert needs to say which connector (and the annotations use).
            Assert.Contains("by (namespace, job", rule.Expr);
        }
        Assert.Equal(services.Count, rules.Count(r => r.Alert == "CdcNotStreaming" && r.Expr.Contains("absent(cdc_stream_up{", StringComparison.Ordinal)));
    }

    [Fact]
    public void It_is_rendered_only_when_enabled_and_the_cluster_has_the_prometheus_operator()
    {
        Assert.Empty(Helm.Template().OfKind("PrometheusRule"));
        Assert.Empty(Helm.Template("--set", "prometheusRule.enabled=true").OfKind("PrometheusRule"));
        Assert.Empty(Helm.Template("--api-versions", "monitoring.coreos.com/v1").OfKind("PrometheusRule"));
        var rule = Helm.Template("--set", "prometheusRule.enabled=true,prometheusRule.labels.release=kube-prometheus-stack", "--api-versions", "monitoring.coreos.com/v1")
            .Single("PrometheusRule");
        Assert.Equal("monitoring.coreos.com/v1", rule.ScalarAt("apiVersion"));
        Assert.Equal("kube-prometheus-stack", rule.Strings("metadata.labels")["release"]);
        Assert.Null(Rules(new Manifests([rule]))[0].Node.At("annotations.runbook_url"));
    }

    /// <summary>The chart's README has a runbook entry per alert: what it means, what to check, what to do.</summary>
    [Fact]
    public void The_chart_readme_has_a_runbook_entry_for_every_alert()
    {
        var readme = File.ReadAllText(Path.Combine(RepositoryFiles.Chart, "README.md"));
        foreach (var alert in AlertNames)
        {
            // A heading whose GitHub anchor is the lower-case name, as runbook_url links it.
            var heading = Regex.Match(readme, $@"(?m)^#### {alert}\s*$");
            Assert.True(heading.Success, $"no '#### {alert}' runbook entry in charts/cdc/README.md");
            var next = readme.IndexOf("\n#", heading.Index + heading.Length, StringComparison.Ordinal);
            var entry = readme[heading.Index..(next < 0 ? readme.Length : next)];
            foreach (var part in new[] { "**Means**", "**Check**", "**Do**" })
                Assert.True(entry.Contains(part, StringComparison.Ordinal), $"the runbook entry of {alert} has no {part}");
        }
    }
}
