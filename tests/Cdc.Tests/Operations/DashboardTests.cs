using System.Text.Json.Nodes;
using System.Text.RegularExpressions;
using Cdc.Embedded;
using Cdc.Tests.Fixtures;
using Xunit.Abstractions;

namespace Cdc.Tests.Operations;

/// <summary>The Grafana dashboard (charts/cdc/dashboards/cdc.json) and the metrics a running worker exports.</summary>
public class DashboardTests(ITestOutputHelper output, ServersFixture fixture) : IClassFixture<ServersFixture>
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

    /// <summary>
    /// The metric names the dashboard queries: identifiers in its expressions (quoted strings and range selectors
    /// removed) that start with cdc_ or messaging_, and the instance variable's metric.
    /// </summary>
    public static SortedSet<string> QueriedMetricNames()
    {
        var dashboard = Dashboard();
        var expressions = Queries(dashboard).Select(q => q.Expr).Append(VariableQuery(Variable(dashboard, "instance")));
        var names = new SortedSet<string>(StringComparer.Ordinal);
        foreach (var expr in expressions)
        {
            var code = Regex.Replace(Regex.Replace(expr, "\"[^\"]*\"", "\"\""), @"\[[^\]]*\]", "[]");
            foreach (Match identifier in Regex.Matches(code, @"(?<![A-Za-z0-9_:$])[a-z_:][a-z0-9_:]*"))
                if (identifier.Value.StartsWith("cdc_", StringComparison.Ordinal) || identifier.Value.StartsWith("messaging_", StringComparison.Ordinal))
                    names.Add(identifier.Value);
        }
        return names;
    }

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
        var instance = Variable(dashboard, "instance");
        Assert.Equal("query", instance["type"]!.GetValue<string>());
        Assert.Equal("label_values(cdc_stream_up, instance)", VariableQuery(instance));
        Assert.Equal("${datasource}", instance["datasource"]!["uid"]!.GetValue<string>());

        var queries = Queries(dashboard).ToList();
        Assert.True(queries.Count >= 15, $"{queries.Count} queries");
        var unfiltered = queries.Where(q => !q.Expr.Contains("instance=~\"$instance\"", StringComparison.Ordinal)).ToList();
        Assert.True(unfiltered.Count == 0, "queries without instance=~\"$instance\":\n" + string.Join("\n", unfiltered));
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
    public void The_dashboard_shows_throughput_latency_lag_wal_backpressure_and_errors()
    {
        var names = QueriedMetricNames();
        output.WriteLine("metric names the dashboard queries: " + string.Join(", ", names));
        Assert.Superset(new SortedSet<string>
        {
            "cdc_events_published_total", "cdc_event_latency_seconds_bucket", "cdc_replication_lag_bytes",
            "cdc_replication_delay_seconds", "cdc_slot_wal_retained_bytes", "cdc_slot_wal_status", "cdc_events_in_flight",
            "cdc_bytes_in_flight_bytes", "cdc_events_dead_lettered_total", "cdc_deliveries_failed_total",
            "cdc_stream_restarts_total", "messaging_client_operation_duration_seconds_bucket", "cdc_producer_queue_depth",
            "cdc_stream_up",
        }, names);
        var queries = Queries(Dashboard()).Select(q => q.Expr).ToList();
        foreach (var quantile in new[] { "0.5", "0.95", "0.99" })
        {
            Assert.Contains(queries, q => q.StartsWith($"histogram_quantile({quantile}, ", StringComparison.Ordinal) && q.Contains("cdc_event_latency_seconds_bucket"));
            Assert.Contains(queries, q => q.StartsWith($"histogram_quantile({quantile}, ", StringComparison.Ordinal) && q.Contains("messaging_client_operation_duration_seconds_bucket"));
        }
        Assert.Contains(queries, q => q.Contains("by (cause)") && q.Contains("cdc_stream_restarts_total"));
        Assert.Contains(queries, q => q.Contains("by (status)") && q.Contains("cdc_slot_wal_status"));
    }

    /// <summary>
    /// Runs the worker binary, makes every kind of event happen (published, dead-lettered, a failed delivery and the
    /// restart it causes), then checks that /metrics has every name the dashboard queries.
    /// </summary>
    [Fact]
    public async Task Every_metric_the_dashboard_queries_is_exported_by_a_running_worker()
    {
        var servers = await fixture.GetAsync();
        using var cluster = MockKafkaCluster.Start(brokers: 1); // its own, so taking it down disturbs no other test
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

        var metrics = await http.GetStringAsync("/metrics");
        var queried = QueriedMetricNames();
        var missing = queried.Where(name => !Exported(metrics, name)).ToList();
        output.WriteLine($"queried by the dashboard ({queried.Count}): {string.Join(", ", queried)}");
        output.WriteLine($"exported by the worker: {string.Join(", ", SampleNames(metrics).Where(n => n.StartsWith("cdc_") || n.StartsWith("messaging_")).Order())}");
        Assert.True(missing.Count == 0,
            $"{missing.Count} of the {queried.Count} metric names the dashboard queries are not in the worker's /metrics: {string.Join(", ", missing)}");
    }

    /// <summary>Sample names of Prometheus text: the first token of each line that is not a comment.</summary>
    static HashSet<string> SampleNames(string metrics) => metrics.Split('\n')
        .Where(l => l.Length > 0 && l[0] != '#')
        .Select(l => l.Split('{', ' ')[0])
        .ToHashSet(StringComparer.Ordinal);

    /// <summary>
    /// Whether /metrics has the name: a sample of that name, a <c># TYPE</c> line for it, or for a _bucket, _sum or
    /// _count name a histogram (or summary) of the base name.
    /// </summary>
    static bool Exported(string metrics, string name)
    {
        if (SampleNames(metrics).Contains(name) || Regex.IsMatch(metrics, $@"(?m)^# TYPE {Regex.Escape(name)} "))
            return true;
        var suffix = Regex.Match(name, "^(.+)_(bucket|sum|count)$");
        return suffix.Success && Regex.IsMatch(metrics, $@"(?m)^# TYPE {Regex.Escape(suffix.Groups[1].Value)} (histogram|summary)\s*$");
    }
}
