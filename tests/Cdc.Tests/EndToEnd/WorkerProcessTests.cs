using System.Net;
using System.Text;
using Cdc.Tests.Fixtures;
using Confluent.Kafka;
using Xunit.Abstractions;

namespace Cdc.Tests.EndToEnd;

/// <summary>The worker binary as it runs in production: a process configured by environment variables.</summary>
public class WorkerProcessTests(ITestOutputHelper output, ServersFixture fixture) : IClassFixture<ServersFixture>
{
    static readonly TimeSpan Timeout = TimeSpan.FromSeconds(90);

    [Fact]
    public async Task A_worker_killed_hard_mid_stream_loses_nothing_when_started_again()
    {
        var servers = await fixture.GetAsync();
        await using var outbox = await OutboxHarness.CreateAsync(servers, output, ["order", "customer"]);
        var environment = WorkerProcess.Environment(outbox.Options);

        var written = new List<TestEvent>();
        async Task<ulong> WriteBatch(int n)
        {
            ulong commit = 0;
            for (var t = 0; t < n; t++)
            {
                var events = Enumerable.Range(0, 10).Select(i =>
                    new TestEvent(i % 2 == 0 ? "order" : "customer", $"a-{i % 4}", $"E{written.Count + i}")).ToArray();
                written.AddRange(events);
                commit = await outbox.CommitAsync(events);
            }
            return commit;
        }

        using (var first = WorkerProcess.Start(environment, output))
        {
            await first.WaitForOutputAsync("Streaming slot", Timeout);
            var writing = WriteBatch(40);
            await Task.Delay(300);
            first.KillHard(); // mid-stream: some events produced, some confirmed, some neither
            await writing;
        }
        var confirmedAtKill = await outbox.ConfirmedFlushLsnAsync();
        var lastCommit = await WriteBatch(10);
        Assert.True(confirmedAtKill < lastCommit);

        using var second = WorkerProcess.Start(environment, output);
        await outbox.WaitForConfirmedAsync(lastCommit, Timeout);

        var delivered = DeliveryAssert.Ids(outbox.ReadTopic(outbox.Topic("order")).Concat(outbox.ReadTopic(outbox.Topic("customer"))));
        var duplicates = DeliveryAssert.EveryEventOnce(written, delivered);
        output.WriteLine($"{written.Count} written, {delivered.Count} records, {duplicates} duplicates after the kill");
    }

    [Fact]
    public async Task SIGTERM_lets_in_flight_events_be_acknowledged_confirms_the_slot_and_exits_zero()
    {
        var servers = await fixture.GetAsync();
        await using var outbox = await OutboxHarness.CreateAsync(servers, output, ["order"]);
        var environment = WorkerProcess.Environment(outbox.Options);
        // Batches wait 3 s in the producer, so events are surely in flight when the signal comes.
        environment["Cdc__Kafka__Producer__linger.ms"] = "3000";
        using var worker = WorkerProcess.Start(environment, output);
        await worker.WaitForOutputAsync("Streaming slot", Timeout);

        ulong lastCommit = 0;
        for (var t = 0; t < 20; t++)
            lastCommit = await outbox.CommitAsync(Enumerable.Range(0, 10).Select(i => new TestEvent("order", $"o-{i}", "E")).ToArray());
        await outbox.WaitForSentAsync(lastCommit, Timeout);
        await Task.Delay(300); // the worker reads what was sent; Kafka has not acknowledged it yet
        Assert.True(await outbox.ConfirmedFlushLsnAsync() < lastCommit, "events should still be in flight");

        var took = await worker.TerminateAsync(TimeSpan.FromSeconds(30));

        Assert.Equal(0, worker.ExitCode);
        Assert.True(took < TimeSpan.FromSeconds(30), $"took {took}");
        Assert.True(await outbox.ConfirmedFlushLsnAsync() >= lastCommit, "the slot was not confirmed after the in-flight events");
        Assert.Equal(200, outbox.ReadTopic(outbox.Topic("order")).Count);
        output.WriteLine($"exited in {took.TotalSeconds:F1}s with every event acknowledged and confirmed");
    }

    [Fact]
    public async Task A_role_without_REPLICATION_stops_the_worker_at_start_with_a_message()
    {
        var servers = await fixture.GetAsync();
        await using var outbox = await OutboxHarness.CreateAsync(servers, output, ["order"]);
        var role = $"{outbox.Name}_norepl";
        await outbox.ExecuteAsync($"CREATE ROLE {role} LOGIN; GRANT SELECT ON {outbox.Options.Postgres.Table} TO {role}");
        try
        {
            var environment = WorkerProcess.Environment(outbox.Options);
            environment["Cdc__Postgres__ConnectionString"] =
                new Npgsql.NpgsqlConnectionStringBuilder(outbox.ConnectionString) { Username = role }.ConnectionString;
            using var worker = WorkerProcess.Start(environment, output);
            await worker.WaitForExitAsync(Timeout);
            Assert.Equal(1, worker.ExitCode);
            Assert.Contains("lacks the REPLICATION attribute", worker.Output);
        }
        finally
        {
            await outbox.ExecuteAsync($"REVOKE ALL ON {outbox.Options.Postgres.Table} FROM {role}; DROP ROLE {role}");
        }
    }

    [Fact]
    public async Task Health_readiness_and_metrics_endpoints_report_the_stream()
    {
        var servers = await fixture.GetAsync();
        await using var outbox = await OutboxHarness.CreateAsync(servers, output, ["order"]);
        using var worker = WorkerProcess.Start(WorkerProcess.Environment(outbox.Options), output);
        await worker.WaitForOutputAsync("Streaming slot", Timeout);
        var lastCommit = await outbox.CommitAsync(Enumerable.Range(0, 25).Select(i => new TestEvent("order", $"o-{i}", "E"))
            .Append(new TestEvent("no such topic!", "x", "Unroutable")).ToArray());
        await outbox.WaitForConfirmedAsync(lastCommit, Timeout);

        using var http = new HttpClient { BaseAddress = new Uri(worker.ListeningUrl), Timeout = TimeSpan.FromSeconds(10) };
        Assert.Equal(System.Net.HttpStatusCode.OK, (await http.GetAsync("/healthz")).StatusCode);
        Assert.Equal(System.Net.HttpStatusCode.OK, (await http.GetAsync("/readyz")).StatusCode);

        var metrics = await http.GetStringAsync("/metrics");
        output.WriteLine(metrics);
        Assert.Equal(25, MetricValue(metrics, "cdc_events_published_total"));
        Assert.Equal(0, MetricValue(metrics, "cdc_events_in_flight"));
        Assert.Equal(1, MetricValue(metrics, "cdc_events_dead_lettered_total{otel_scope_name=\"Cdc\",reason=\"unroutable\"}"));
        Assert.Equal(0, MetricValue(metrics, "cdc_deliveries_failed_total"));
        Assert.Equal(1, MetricValue(metrics, "cdc_stream_up"));
        Assert.Contains("cdc_event_latency_seconds_bucket", metrics);
        Assert.Contains("cdc_replication_lag_bytes", metrics);
    }

    /// <summary>The value of a sample in Prometheus text: <c>name{labels} value [timestamp]</c>.</summary>
    static double MetricValue(string metrics, string name)
    {
        var line = metrics.Split('\n').FirstOrDefault(l => l.StartsWith(name + " ", StringComparison.Ordinal) || l.StartsWith(name + "{", StringComparison.Ordinal))
                   ?? throw new Xunit.Sdk.XunitException($"{name} not in /metrics:\n{metrics}");
        var afterLabels = line.Contains('}') ? line[(line.LastIndexOf('}') + 1)..] : line[name.Length..];
        return double.Parse(afterLabels.Split(' ', StringSplitOptions.RemoveEmptyEntries)[0], System.Globalization.CultureInfo.InvariantCulture);
    }

    [Theory]
    [InlineData("Cdc__Postgres__ConnectionString", null, 2, "Cdc:Postgres:ConnectionString (env Cdc__Postgres__ConnectionString): is required")]
    [InlineData("Cdc__Kafka__BootstrapServers", "", 2, "Cdc:Kafka:BootstrapServers (env Cdc__Kafka__BootstrapServers): is required")]
    [InlineData("Cdc__Postgres__Slot", "Not-Valid", 2, "Cdc:Postgres:Slot")]
    [InlineData("Cdc__Postgres__Table", "public.no_such_table", 1, "Cdc:Postgres:Table (env Cdc__Postgres__Table): table public.no_such_table does not exist")]
    [InlineData("Cdc__Postgres__Columns__Payload", "body", 1, "Cdc:Postgres:Columns:Payload (env Cdc__Postgres__Columns__Payload): table")]
    [InlineData("Cdc__Postgres__Columns__Payload", "event_type", 1, "Cdc:Postgres:Columns:Payload (env Cdc__Postgres__Columns__Payload): column")]
    [InlineData("Cdc__Postgres__ConnectionString", "Host=127.0.0.1;Bogus Keyword=1", 2, "Cdc:Postgres:ConnectionString (env Cdc__Postgres__ConnectionString): is not a valid Npgsql connection string")]
    [InlineData("Cdc__Relay__MaxInFlightEvents", "lots", 2, "Cdc:Relay:MaxInFlightEvents")]
    public async Task Invalid_configuration_stops_the_worker_at_start_naming_the_key(string key, string? value, int exitCode, string message)
    {
        var servers = await fixture.GetAsync();
        await using var outbox = await OutboxHarness.CreateAsync(servers, output, ["order"]);
        var environment = WorkerProcess.Environment(outbox.Options);
        environment[key] = value;
        if (value is null)
            environment.Remove(key);

        using var worker = WorkerProcess.Start(environment, output);
        await worker.WaitForExitAsync(Timeout);

        Assert.Equal(exitCode, worker.ExitCode);
        Assert.Contains(message, worker.Output);
        Assert.DoesNotContain("   at ", worker.Output); // a message, not a stack trace
    }

    [Fact]
    public async Task A_worker_started_before_its_database_waits_for_it_not_ready_and_then_streams()
    {
        var servers = await fixture.GetAsync();
        await using var outbox = await OutboxHarness.CreateAsync(servers, output, ["order"]);
        var target = new Npgsql.NpgsqlConnectionStringBuilder(servers.PostgresConnectionString);
        using var proxy = new TcpProxy(target.Port);
        proxy.Cut(); // the database is not up yet: connections are refused
        var environment = WorkerProcess.Environment(outbox.Options);
        environment["Cdc__Postgres__ConnectionString"] = new Npgsql.NpgsqlConnectionStringBuilder(servers.PostgresConnectionString)
        {
            Host = "127.0.0.1", Port = proxy.Port, Timeout = 3,
        }.ConnectionString;
        using var worker = WorkerProcess.Start(environment, output);
        await worker.WaitForOutputAsync($"PostgreSQL is unreachable at 127.0.0.1:{proxy.Port} (Cdc:Postgres:ConnectionString)", Timeout);
        await Task.Delay(TimeSpan.FromSeconds(5)); // several attempts
        Assert.False(worker.HasExited, "the worker should wait for its database, not exit");
        using var http = new HttpClient { BaseAddress = new Uri(worker.ListeningUrl) };
        Assert.Equal(HttpStatusCode.ServiceUnavailable, (await http.GetAsync("/readyz")).StatusCode);
        Assert.Equal(HttpStatusCode.OK, (await http.GetAsync("/healthz")).StatusCode);

        proxy.Restore();
        await worker.WaitForOutputAsync("Streaming slot", Timeout);
        var written = new TestEvent("order", "o-1", "AfterTheWait");
        await outbox.WaitForConfirmedAsync(await outbox.CommitAsync(written), Timeout);
        Assert.Equal([written.Id.ToString()], DeliveryAssert.Ids(outbox.ReadTopic(outbox.Topic("order"))));
        Assert.Equal(HttpStatusCode.OK, (await http.GetAsync("/readyz")).StatusCode);
        Assert.Single(System.Text.RegularExpressions.Regex.Matches(worker.Output, "PostgreSQL is unreachable"));
        await worker.TerminateAsync(TimeSpan.FromSeconds(30));
    }
}
