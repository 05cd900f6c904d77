using System.Text;
using Cdc.Embedded;
using Cdc.Tests.Fixtures;
using Confluent.Kafka;
using Npgsql;
using Xunit.Abstractions;

namespace Cdc.Tests.Faults;

/// <summary>
/// PostgreSQL goes away under the connector: restarted, crashed, or the network cut. Each test has a PostgreSQL of its own
/// (the machine's binaries) so the shared server stays up for the other tests.
/// </summary>
public class PostgresFaultTests(ITestOutputHelper output, ServersFixture fixture) : IClassFixture<ServersFixture>
{
    static readonly TimeSpan Timeout = TimeSpan.FromSeconds(90);

    async Task<(EmbeddedPostgres Postgres, TestServers Servers)> OwnPostgresAsync(EmbeddedPostgresOptions? options = null)
    {
        var shared = await fixture.GetAsync();
        var postgres = await EmbeddedPostgres.StartAsync(options);
        return (postgres, new TestServers
        {
            PostgresConnectionString = postgres.ConnectionString,
            KafkaBootstrapServers = shared.KafkaBootstrapServers,
            MockCluster = shared.MockCluster,
            Description = "own PostgreSQL",
        });
    }

    static List<string> DeliveredIds(OutboxHarness outbox) => DeliveryAssert.Ids(outbox.ReadTopic(outbox.Topic("order")));

    static TestEvent[] Batch(int n, string prefix) =>
        Enumerable.Range(0, n).Select(i => new TestEvent("order", $"o-{i % 5}", $"{prefix}{i}")).ToArray();

    [Theory]
    [InlineData("fast")]
    [InlineData("immediate")]
    public async Task The_relay_stays_up_through_a_database_restart_and_loses_nothing(string mode)
    {
        // Durable commits: with fsync or synchronous_commit off, a crash loses commits in PostgreSQL itself.
        var (postgres, servers) = await OwnPostgresAsync(new EmbeddedPostgresOptions { Fsync = true });
        await using var _ = postgres;
        await using var outbox = await OutboxHarness.CreateAsync(servers, output, ["order"]);
        await outbox.StartRelayAsync();

        var written = new List<TestEvent>();
        for (var t = 0; t < 10; t++)
        {
            var batch = Batch(10, $"before{t}_");
            written.AddRange(batch);
            await outbox.CommitAsync(batch);
        }
        // Mid-stream: the relay is still producing and confirming these.
        await postgres.RestartAsync(mode);
        NpgsqlConnection.ClearAllPools();

        ulong lastCommit = 0;
        for (var t = 0; t < 10; t++)
        {
            var batch = Batch(10, $"after{t}_");
            written.AddRange(batch);
            lastCommit = await outbox.CommitAsync(batch);
        }
        await outbox.WaitForConfirmedAsync(lastCommit, Timeout);
        outbox.AssertRelayRunning();

        var duplicates = DeliveryAssert.EveryEventOnce(written, DeliveredIds(outbox));
        output.WriteLine($"restart {mode}: {written.Count} written, {duplicates} duplicates (PostgreSQL 15 resends from the last checkpoint)");
    }

    [Fact]
    public async Task A_cut_network_to_the_database_is_survived_and_nothing_is_lost()
    {
        var (postgres, servers) = await OwnPostgresAsync();
        await using var _ = postgres;
        using var proxy = new TcpProxy(postgres.Port);
        await using var outbox = await OutboxHarness.CreateAsync(servers, output, ["order"], configure: o =>
            o.Postgres.ConnectionString = new NpgsqlConnectionStringBuilder(postgres.ConnectionString) { Port = proxy.Port, Pooling = false }.ConnectionString);
        await outbox.StartRelayAsync();

        var written = new List<TestEvent>();
        var first = Batch(20, "before");
        written.AddRange(first);
        await outbox.CommitAsync(first);

        proxy.Cut();
        // Written directly (not through the proxy) while the connector is cut off.
        var during = Batch(20, "during");
        written.AddRange(during);
        await outbox.CommitAsync(during);
        await Task.Delay(TimeSpan.FromSeconds(3));
        Assert.False(outbox.Status.Streaming, "the relay should have noticed the cut");
        var accepted = proxy.Accepted;
        proxy.Restore();

        var after = Batch(20, "after");
        written.AddRange(after);
        var lastCommit = await outbox.CommitAsync(after);
        await outbox.WaitForConfirmedAsync(lastCommit, Timeout);
        Assert.True(proxy.Accepted > accepted, "the relay should have reconnected through the proxy");

        var duplicates = DeliveryAssert.EveryEventOnce(written, DeliveredIds(outbox));
        output.WriteLine($"{written.Count} written, {duplicates} duplicates");
    }

    [Fact]
    public async Task A_slot_invalidated_by_max_slot_wal_keep_size_stops_the_worker_or_is_recreated_with_the_gap_reported()
    {
        var (postgres, servers) = await OwnPostgresAsync(new EmbeddedPostgresOptions
        {
            Settings = new Dictionary<string, string> { ["max_slot_wal_keep_size"] = "1MB", ["wal_keep_size"] = "0" },
        });
        await using var _ = postgres;
        await using var outbox = await OutboxHarness.CreateAsync(servers, output, ["order"]);
        var environment = WorkerProcess.Environment(outbox.Options);

        using (var worker = WorkerProcess.Start(environment, output))
        {
            await worker.WaitForOutputAsync("Streaming slot", Timeout);
            await outbox.WaitForConfirmedAsync(await outbox.CommitAsync(new TestEvent("order", "o-1", "Before")), Timeout);
            await worker.TerminateAsync(TimeSpan.FromSeconds(30));
        }

        // While no one reads the slot, more WAL than max_slot_wal_keep_size is written and recycled.
        var lost = new TestEvent("order", "o-1", "Lost");
        await outbox.CommitAsync(lost);
        for (var i = 0; i < 4; i++)
            await outbox.ExecuteAsync($"INSERT INTO public.{outbox.Name}_business (note) SELECT repeat('x', 1000) FROM generate_series(1, 3000); SELECT pg_switch_wal();");
        await outbox.ExecuteAsync("CHECKPOINT");
        Assert.Equal("lost", await SlotWalStatusAsync(outbox));

        using (var stopped = WorkerProcess.Start(environment, output))
        {
            await stopped.WaitForExitAsync(Timeout);
            Assert.Equal(1, stopped.ExitCode);
            Assert.Contains("is invalidated (wal_status = 'lost')", stopped.Output);
            Assert.Matches("The last position the connector confirmed in it is [0-9A-F]+/[0-9A-F]+ \\(its transaction committed at ", stopped.Output);
            Assert.Contains("Set Cdc:Postgres:LostSlotPolicy=Backfill", stopped.Output);
        }

        environment["Cdc__Postgres__LostSlotPolicy"] = "Recreate";
        using var recreating = WorkerProcess.Start(environment, output);
        await recreating.WaitForOutputAsync("Streaming slot", Timeout);
        Assert.Matches("Events committed after [0-9A-F]+/[0-9A-F]+ \\(its transaction committed at [^)]+\\) and before [0-9A-F]+/[0-9A-F]+ were not relayed", recreating.Output);
        var afterCommit = await outbox.CommitAsync(new TestEvent("order", "o-1", "After"));
        await outbox.WaitForConfirmedAsync(afterCommit, Timeout);
        Assert.Equal(["Before", "After"], outbox.ReadTopic(outbox.Topic("order")).OrderBy(r => r.Offset.Value)
            .Select(r => DeliveryAssert.Header(r, "event_type")).Distinct());
    }

    [Fact]
    public async Task A_server_without_logical_wal_level_stops_the_worker_at_start_with_a_message()
    {
        var (postgres, servers) = await OwnPostgresAsync(new EmbeddedPostgresOptions
        {
            Settings = new Dictionary<string, string> { ["wal_level"] = "replica" },
        });
        await using var _ = postgres;
        await using var outbox = await OutboxHarness.CreateAsync(servers, output, ["order"]);
        using var worker = WorkerProcess.Start(WorkerProcess.Environment(outbox.Options), output);
        await worker.WaitForExitAsync(Timeout);
        Assert.Equal(1, worker.ExitCode);
        Assert.Contains("wal_level is 'replica'; logical replication needs wal_level = logical", worker.Output);
    }

    static async Task<string?> SlotWalStatusAsync(OutboxHarness outbox)
    {
        await using var connection = new NpgsqlConnection(outbox.ConnectionString);
        await connection.OpenAsync();
        await using var command = new NpgsqlCommand("SELECT wal_status FROM pg_replication_slots WHERE slot_name = $1", connection);
        command.Parameters.AddWithValue(outbox.Options.Postgres.Slot);
        return (string?)await command.ExecuteScalarAsync();
    }
}
