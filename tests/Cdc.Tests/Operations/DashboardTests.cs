using System.Text.Json.Nodes;
using System.Text.RegularExpressions;
using Cdc.Embedded;
using Cdc.Tests.Fixtures;
using Xunit.Abstractions;

namespace Cdc.Tests.Operations;

/// <summary>The Grafana dashboard (charts/cdc/dashboards/cdc.json) and the metrics a running worker exports.</summary>
public class DashboardTests(ITestOutputHelper output)
{
    static readonly TimeSpan Timeout = TimeSpan.FromSeconds(90);

    static JsonObject Dashboard() => JsonNode.Parse(File.ReadAllText(RepositoryFiles.Dashboard))!.AsObject();

    /// <summary>Every panel, including those nested in collapsed rows.</summary>
    static IEnumerable<JsonObject> Panels(JsonObject dashboard)
    {
        foreach (var panel in dashboard["panels"]!.AsArray().Select(p => p!.AsObject()))
        {
            yield return panel;
            if (panel["panels"] is JsonArray nested)
                foreach (var inner in nested)
                    yield return inner!.AsObject();
        }
    }

    static IEnumerable<(string Panel, string Expr)> Queries(JsonObject dashboard) =>
        Panels(dashboard).SelectMany(p => (p["targets"] as JsonArray ?? [])
            .Select(t => (p["title"]!.GetValue<string>(), t!["expr"]?.GetValue<string>() ?? "")));

    static JsonObject Variable(JsonObject dashboard, string name) =>
        dashboard["templating"]!["list"]!.AsArray().Select(v => v!.AsObject()).SingleOrDefault(v => v["name"]?.GetValue<string>() == name)
        ?? throw new Xunit.Sdk.XunitException($"the dashboard has no template variable '{name}'");

    static string VariableQuery(JsonObject variable) => variable["query"] switch
    {
        JsonObject query => query["query"]!.GetValue<string>(),
        JsonNode query => query.GetValue<string>(),
        null => "",
    };

    /// <summary>A query as Prometheus receives it: Grafana's interval variables replaced ($instance stays inside its string).</summary>
    static string ForPrometheus(string expr) => Regex.Replace(expr, @"\$__(rate_interval|interval|range)\b", "5m");

    /// <summary>Every query of the dashboard (and the instance variable's), parsed by Prometheus' grammar.</summary>
    internal static List<(string Where, PromQl.Parsed Parsed)> ParsedQueries()
    {
        var dashboard = Dashboard();
        var queries = Queries(dashboard).ToList();
        var instance = VariableQuery(Variable(dashboard, "instance"));
        // label_values(metric, label) is Grafana's, not PromQL: its metric argument is.
        var variableMetric = Regex.Match(instance, @"^label_values\((.+),\s*\w+\)$").Groups[1].Value;
        queries.Add(("variable instance", variableMetric));
        var parsed = PromQl.Parse(queries.Select(q => ForPrometheus(q.Expr)).ToList());
        return queries.Zip(parsed, (q, p) => (q.Panel, p)).ToList();
    }

    /// <summary>The metric names the dashboard queries.</summary>
    internal static SortedSet<string> QueriedMetricNames() =>
        new(ParsedQueries().SelectMany(q => q.Parsed.Selectors).Select(s => s.Metric), StringComparer.Ordinal);

    [Fact]
    public void The_dashboard_parses_and_is_templated_on_the_prometheus_datasource_and_instance()
    {
        var dashboard = Dashboard();
        Assert.Equal("cdc-outbox", dashboard["uid"]!.GetValue<string>());
        Assert.Equal("Cdc outbox relay", dashboard["title"]!.GetValue<string>());
        Assert.InRange(dashboard["schemaVersion"]!.GetValue<int>(), 36, 41);

        var datasource = Variable(dashboard, "datasource");
        Assert.Equal("datasource", datasource["type"]!.GetValue<string>());
        Assert.Equal("prometheus", datasource["query"]!.GetValue<string>());
        // The connector (job: its Service's name, one per outbox of a release), then its pods.
        var job = Variable(dashboard, "job");
        Assert.Equal("query", job["type"]!.GetValue<string>());
        Assert.Equal("label_values(cdc_stream_up, job)", VariableQuery(job));
        var instance = Variable(dashboard, "instance");
        Assert.Equal("query", instance["type"]!.GetValue<string>());
        Assert.Equal("label_values(cdc_stream_up{job=~\"$job\"}, instance)", VariableQuery(instance));
        foreach (var variable in new[] { job, instance })
        {
            Assert.Equal("${datasource}", variable["datasource"]!["uid"]!.GetValue<string>());
            Assert.True(variable["includeAll"]!.GetValue<bool>());
            Assert.Equal(".*", variable["allValue"]!.GetValue<string>());
        }

        var queries = Queries(dashboard).ToList();
        Assert.True(queries.Count >= 15, $"{queries.Count} queries");
        // Every selector of every query keeps to the chosen connectors and pods.
        var unfiltered = ParsedQueries().Where(q => q.Where != "variable instance")
            .SelectMany(q => q.Parsed.Selectors.Where(s =>
                !s.Matchers.Contains(new PromQl.Matcher("job", "=~", "$job")) || !s.Matchers.Contains(new PromQl.Matcher("instance", "=~", "$instance")))
                .Select(s => $"{q.Where}: {s.Metric}"))
            .ToList();
        Assert.True(unfiltered.Count == 0, "selectors without job=~\"$job\" and instance=~\"$instance\":\n" + string.Join("\n", unfiltered));
        foreach (var panel in Panels(dashboard).Where(p => p["type"]!.GetValue<string>() != "row"))
        {
            Assert.Equal("${datasource}", panel["datasource"]?["uid"]?.GetValue<string>());
            foreach (var target in panel["targets"]!.AsArray())
                Assert.Equal("${datasource}", target!["datasource"]?["uid"]?.GetValue<string>());
        }
        var ids = Panels(dashboard).Select(p => p["id"]!.GetValue<int>()).ToList();
        Assert.Equal(ids.Count, ids.Distinct().Count());
    }

    [Fact]
    public void The_dashboard_shows_throughput_latency_lag_wal_backpressure_errors_leaders_and_table_reads()
    {
        var names = QueriedMetricNames();
        output.WriteLine("metric names the dashboard queries: " + string.Join(", ", names));
        Assert.Superset(new SortedSet<string>
        {
            "cdc_events_published_total", "cdc_event_latency_seconds_bucket", "cdc_replication_lag_bytes",
            "cdc_replication_delay_seconds", "cdc_slot_wal_retained_bytes", "cdc_slot_wal_status", "cdc_events_in_flight",
            "cdc_bytes_in_flight_bytes", "cdc_events_dead_lettered_total", "cdc_deliveries_failed_total",
            "cdc_stream_restarts_total", "messaging_client_operation_duration_seconds_bucket", "cdc_producer_queue_depth",
            "cdc_stream_up", "cdc_stream_standby", "cdc_stream_starts_total", "cdc_delivery_blocked", "cdc_snapshot_rows_total",
        }, names);
        var queries = Queries(Dashboard()).Select(q => q.Expr).ToList();
        foreach (var quantile in new[] { "0.5", "0.95", "0.99" })
        {
            Assert.Contains(queries, q => q.StartsWith($"histogram_quantile({quantile}, ", StringComparison.Ordinal) && q.Contains("cdc_event_latency_seconds_bucket"));
            Assert.Contains(queries, q => q.StartsWith($"histogram_quantile({quantile}, ", StringComparison.Ordinal) && q.Contains("messaging_client_operation_duration_seconds_bucket"));
        }
        Assert.Contains(queries, q => q.Contains("by (cause)") && q.Contains("cdc_stream_restarts_total"));
        Assert.Contains(queries, q => q.Contains("by (status)") && q.Contains("cdc_slot_wal_status"));

        // Leader and standbys per pod in one series each; handovers; rows read from the table by origin.
        var panels = Panels(Dashboard()).GroupBy(p => p["title"]!.GetValue<string>()).ToDictionary(g => g.Key, g => g.First());
        var leader = panels["Leader and standbys"];
        Assert.Equal("state-timeline", leader["type"]!.GetValue<string>());
        Assert.StartsWith("2 * cdc_stream_up{", leader["targets"]![0]!["expr"]!.GetValue<string>());
        Assert.Equal("{{instance}}", leader["targets"]![0]!["legendFormat"]!.GetValue<string>());
        var mappings = leader["fieldConfig"]!["defaults"]!["mappings"]![0]!["options"]!;
        Assert.Equal(["neither", "standby", "leader"], new[] { "0", "1", "2" }.Select(v => mappings[v]!["text"]!.GetValue<string>()));
        Assert.Contains("cdc_stream_starts_total", panels["Stream starts (handovers)"]["targets"]![0]!["expr"]!.GetValue<string>());
        Assert.Contains("cdc_delivery_blocked", panels["Delivery blocked"]["targets"]![0]!["expr"]!.GetValue<string>());
        var origins = panels["Rows read from the table by origin"]["targets"]![0]!;
        Assert.StartsWith("sum by (origin) (", origins["expr"]!.GetValue<string>());
        Assert.Contains("origin=~\"snapshot|backfill|republish\"", origins["expr"]!.GetValue<string>());
        Assert.Equal("{{origin}}", origins["legendFormat"]!.GetValue<string>());
        // Panels do not overlap on the grid.
        var cells = new HashSet<(int, int)>();
        foreach (var panel in Panels(Dashboard()))
        {
            var grid = panel["gridPos"]!;
            for (var x = grid["x"]!.GetValue<int>(); x < grid["x"]!.GetValue<int>() + grid["w"]!.GetValue<int>(); x++)
                for (var y = grid["y"]!.GetValue<int>(); y < grid["y"]!.GetValue<int>() + grid["h"]!.GetValue<int>(); y++)
                    Assert.True(cells.Add((x, y)), $"panel '{panel["title"]}' overlaps another at ({x}, {y})");
        }
    }

    [Fact]
    public void Every_dashboard_query_parses_as_promql()
    {
        var queries = ParsedQueries();
        Assert.True(queries.Count >= 16, $"{queries.Count} queries");
        PromQl.AssertValid(queries);
        Assert.All(queries, q => Assert.NotEmpty(q.Parsed.Selectors));
    }

    /// <summary>
    /// Runs the worker binary against its own PostgreSQL (with max_slot_wal_keep_size, so the slot's safe WAL size is
    /// reported) and its own Kafka-protocol mock cluster, makes every kind of event happen (published, dead-lettered,
    /// a failed delivery and the restart it causes), then checks that /metrics has every metric, and every label value,
    /// that the dashboard's queries and the chart's alert expressions (rendered by helm) select.
    /// </summary>
    [Fact]
    public async Task Every_metric_the_dashboard_and_the_alerts_query_is_exported_by_a_running_worker()
    {
        var selectors = ParsedQueries().SelectMany(q => q.Parsed.Selectors.Select(s => ($"dashboard panel {q.Where}", s))).ToList();
        var rules = AlertRuleTests.AllValuesRules();
        var parsedRules = PromQl.Parse(rules.Select(r => r.Expr).ToList());
        selectors.AddRange(rules.Zip(parsedRules).SelectMany(r => r.Second.Selectors.Select(s => ($"alert {r.First.Alert}", s))));
        Assert.Equal(AlertRuleTests.AlertNames.Order(), rules.Select(r => r.Alert).Order());

        await using var postgres = await EmbeddedPostgres.StartAsync(new EmbeddedPostgresOptions
        {
            Settings = new Dictionary<string, string> { ["max_slot_wal_keep_size"] = "1GB" },
        });
        using var cluster = MockKafkaCluster.Start(brokers: 1); // its own, so taking it down disturbs no other test
        var servers = new TestServers
        {
            PostgresConnectionString = postgres.ConnectionString,
            KafkaBootstrapServers = cluster.BootstrapServers,
            MockCluster = cluster,
            Description = "own PostgreSQL (max_slot_wal_keep_size 1GB) and own Kafka-protocol mock cluster",
        };
        output.WriteLine($"servers: {servers.Description}");
        await using var outbox = await OutboxHarness.CreateAsync(servers, output, [], bootstrapServers: cluster.BootstrapServers);
        cluster.CreateTopic(outbox.Topic("order"), partitions: 3, replicationFactor: 1);
        cluster.CreateTopic(outbox.DeadLetterTopic, partitions: 1, replicationFactor: 1);

        var environment = WorkerProcess.Environment(outbox.Options);
        environment["Cdc__Kafka__Producer__message.timeout.ms"] = "1500";
        environment["Cdc__Relay__MaxRetryBackoff"] = "00:00:01";
        using var worker = WorkerProcess.Start(environment, output);
        await worker.WaitForOutputAsync("Streaming slot", Timeout);
        using var http = new HttpClient { BaseAddress = new Uri(worker.ListeningUrl), Timeout = TimeSpan.FromSeconds(10) };

        // Published events and one dead letter (headers that are not a JSON object).
        await outbox.CommitAsync(Enumerable.Range(0, 20).Select(i => new TestEvent("order", $"o-{i % 4}", "E")).ToArray());
        await outbox.WaitForConfirmedAsync(await outbox.CommitAsync(new TestEvent("order", "o-bad", "E", Headers: "[1]")), Timeout);

        // A delivery that fails (the broker is down longer than message.timeout.ms) and the restart it causes.
        cluster.SetAllBrokersDown();
        await outbox.CommitAsync(new TestEvent("order", "o-down", "E"));
        var deadline = DateTime.UtcNow + TimeSpan.FromSeconds(30);
        while (DateTime.UtcNow < deadline)
        {
            var during = await http.GetStringAsync("/metrics");
            if (during.Contains("cdc_deliveries_failed_total", StringComparison.Ordinal) && during.Contains("cdc_stream_restarts_total", StringComparison.Ordinal))
                break;
            await Task.Delay(250);
        }
        cluster.SetAllBrokersUp();
        await outbox.WaitForConfirmedAsync(await outbox.CommitAsync(new TestEvent("order", "o-after", "E")), Timeout);

        // The slot's health is read every 5 s: wait for a scrape that has everything, or report what is still missing.
        string metrics;
        List<string> missing;
        deadline = DateTime.UtcNow + TimeSpan.FromSeconds(30);
        do
        {
            metrics = await http.GetStringAsync("/metrics");
            var samples = PromQl.Samples(metrics);
            missing = selectors.SelectMany(s => PromQl.Missing(s.Item2, metrics, samples).Select(m => $"{m} ({s.Item1})")).Distinct().ToList();
            if (missing.Count == 0)
                break;
            await Task.Delay(500);
        }
        while (DateTime.UtcNow < deadline);

        output.WriteLine($"selected by the dashboard and the alerts: {string.Join(", ", selectors.Select(s => s.Item2.Metric).Distinct().Order())}");
        output.WriteLine($"exported by the worker: {string.Join(", ", SampleNames(metrics).Where(n => n.StartsWith("cdc_") || n.StartsWith("messaging_")).Order())}");
        Assert.True(missing.Count == 0,
            $"{missing.Count} metrics or label values that the dashboard or the alerts select are not in the worker's /metrics:\n{string.Join("\n", missing)}");
        // Every metric the worker exports is in the README's metrics table (histograms by their base name).
        var readme = RepositoryFiles.Read("README.md");
        var undocumented = SampleNames(metrics)
            .Where(n => n.StartsWith("cdc_", StringComparison.Ordinal) || n.StartsWith("messaging_", StringComparison.Ordinal))
            .Select(n => Regex.Replace(n, "_(bucket|sum|count)$", ""))
            .Distinct()
            .Where(n => !readme.Contains($"| `{n}` |", StringComparison.Ordinal))
            .ToList();
        Assert.True(undocumented.Count == 0, "exported but missing from the README's metrics table: " + string.Join(", ", undocumented));
        // The alerts' thresholds compare against numbers the worker really reports.
        Assert.Contains(PromQl.Samples(metrics), s => s.Name == "cdc_slot_wal_safe_size_bytes");
        Assert.Contains(PromQl.Samples(metrics), s => s.Name == "cdc_slot_wal_status" && s.Labels["status"] == "reserved");
    }

    /// <summary>Sample names of Prometheus text: the first token of each line that is not a comment.</summary>
    static HashSet<string> SampleNames(string metrics) => metrics.Split('\n')
        .Where(l => l.Length > 0 && l[0] != '#')
        .Select(l => l.Split('{', ' ')[0])
        .ToHashSet(StringComparer.Ordinal);
}
