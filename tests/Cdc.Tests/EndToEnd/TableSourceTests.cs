using System.Net;
using System.Text;
using System.Text.RegularExpressions;
using Cdc.Configuration;
using Cdc.Embedded;
using Cdc.Outbox.V1;
using Cdc.Positions;
using Cdc.Tests.Fixtures;
using Confluent.Kafka;
using Npgsql;
using NpgsqlTypes;
using Xunit.Abstractions;

namespace Cdc.Tests.EndToEnd;

/// <summary>
/// The table as a second source: lost slots (known from the checkpoint, never taken for a first start), the backfill
/// of their gap, the initial snapshot, and re-publishing on a signal. Tests that take brokers down or kill workers have
/// a mock cluster of their own (librdkafka's Kafka-protocol test broker).
/// </summary>
public class TableSourceTests(ITestOutputHelper output, ServersFixture fixture) : IClassFixture<ServersFixture>
{
    static readonly TimeSpan Timeout = TimeSpan.FromSeconds(90);

    static Dictionary<string, string?> Environment(OutboxHarness outbox, LostSlotPolicy policy = LostSlotPolicy.Stop)
    {
        var environment = WorkerProcess.Environment(outbox.Options);
        environment["Cdc__Postgres__LostSlotPolicy"] = policy.ToString();
        environment["Cdc__Postgres__BackfillMargin"] = "00:00:30";
        return environment;
    }

    /// <summary>
    /// A worker streams and confirms one event; then the brokers go down, 50 events are committed, the worker is killed
    /// and the slot dropped (by a DBA, or a failover to a server without it), and the brokers come back.
    /// </summary>
    async Task<(OutboxHarness Outbox, MockKafkaCluster Cluster, TestEvent Before, List<TestEvent> Gap, ulong Confirmed)> LoseTheSlotAsync()
    {
        var servers = await fixture.GetAsync();
        var cluster = MockKafkaCluster.Start(brokers: 1);
        var outbox = await OutboxHarness.CreateAsync(servers, output, [], bootstrapServers: cluster.BootstrapServers);
        cluster.CreateTopic(outbox.Topic("order"), 3, 1);
        var before = new TestEvent("order", "o-0", "Before");
        using (var worker = WorkerProcess.Start(Environment(outbox), output))
        {
            await worker.WaitForOutputAsync("Streaming slot", Timeout);
            await outbox.WaitForConfirmedAsync(await outbox.CommitAsync(before), Timeout);
            await Task.Delay(TimeSpan.FromSeconds(2)); // the checkpoint follows the confirm within a second
            cluster.SetAllBrokersDown();
            var gap = Enumerable.Range(0, 50).Select(i => new TestEvent("order", $"o-{i % 5}", $"Gap{i}")).ToList();
            foreach (var chunk in gap.Chunk(10))
                await outbox.CommitAsync(chunk);
            await Task.Delay(500);
            worker.KillHard();
            await worker.WaitForExitAsync(Timeout);
            var confirmed = await outbox.ConfirmedFlushLsnAsync();
            await DropSlotAsync(outbox);
            cluster.SetAllBrokersUp();
            return (outbox, cluster, before, gap, confirmed);
        }
    }

    static async Task DropSlotAsync(OutboxHarness outbox)
    {
        for (var deadline = DateTime.UtcNow + Timeout; ; await Task.Delay(200))
        {
            try
            {
                await outbox.ExecuteAsync($"SELECT pg_drop_replication_slot('{outbox.Options.Postgres.Slot}')");
                return;
            }
            catch (PostgresException e) when (e.SqlState == PostgresErrorCodes.ObjectInUse && DateTime.UtcNow < deadline)
            {
                // The killed worker's walsender has not gone yet.
            }
        }
    }

    [Fact]
    public async Task A_slot_dropped_with_events_unacknowledged_stops_the_worker_naming_the_last_confirmed_position_and_Backfill_relays_the_gap()
    {
        var (outbox, cluster, before, gap, confirmed) = await LoseTheSlotAsync();
        await using var _ = outbox;
        using var __ = cluster;

        using (var stopped = WorkerProcess.Start(Environment(outbox), output))
        {
            await stopped.WaitForExitAsync(Timeout);
            Assert.Equal(1, stopped.ExitCode);
            Assert.Contains($"Slot {outbox.Options.Postgres.Slot} does not exist any more", stopped.Output);
            // The position of the last checkpoint: the slot's own may have moved on after it (keepalive positions confirmed
            // while the brokers were down, when no checkpoint could be written), never the other way.
            var named = System.Text.RegularExpressions.Regex.Match(stopped.Output,
                @"The last position the connector confirmed in it is (\S+) \(its transaction committed at ");
            Assert.True(named.Success, "the stop names the last confirmed position");
            Assert.InRange((ulong)NpgsqlLogSequenceNumber.Parse(named.Groups[1].Value), 1UL, confirmed);
            Assert.Contains("Cdc:Postgres:LostSlotPolicy=Backfill", stopped.Output);
        }
        Assert.Equal(0UL, await outbox.ConfirmedFlushLsnAsync()); // not silently created

        using var backfilling = WorkerProcess.Start(Environment(outbox, LostSlotPolicy.Backfill), output);
        await backfilling.WaitForOutputAsync("Streaming slot", Timeout);
        var after = new TestEvent("order", "o-0", "After");
        await outbox.WaitForConfirmedAsync(await outbox.CommitAsync(after), Timeout);

        var records = outbox.ReadTopic(outbox.Topic("order"));
        var written = gap.Prepend(before).Append(after).ToList();
        DeliveryAssert.EveryEventOnce(written, DeliveryAssert.Ids(records));
        DeliveryAssert.FirstDeliveriesInWrittenOrder(written, records);
        var origins = records.GroupBy(r => DeliveryAssert.Header(r, "id")).ToDictionary(g => g.Key,
            g => g.Select(r => OutboxEvent.Parser.ParseFrom(r.Message.Value).Source.Origin).ToList());
        Assert.All(gap, e => Assert.Contains(Origin.Backfill, origins[e.Id.ToString()]));
        Assert.Equal([Origin.Wal], origins[after.Id.ToString()]);
        Assert.Matches("Events committed after [0-9A-F]+/[0-9A-F]+ \\(its transaction committed at [^)]+\\) and before [0-9A-F]+/[0-9A-F]+ were not relayed from the slot; they are relayed from the table", backfilling.Output);
        Assert.Contains("The backfill of", backfilling.Output);
        await backfilling.TerminateAsync(TimeSpan.FromSeconds(30));
    }

    [Fact]
    public async Task Recreate_logs_and_counts_the_gap_with_its_bounds_and_streams_on()
    {
        var (outbox, cluster, before, gap, confirmed) = await LoseTheSlotAsync();
        await using var _ = outbox;
        using var __ = cluster;

        using var worker = WorkerProcess.Start(Environment(outbox, LostSlotPolicy.Recreate), output);
        await worker.WaitForOutputAsync("Streaming slot", Timeout);
        var after = new TestEvent("order", "o-0", "After");
        await outbox.WaitForConfirmedAsync(await outbox.CommitAsync(after), Timeout);

        // The gap starts at the last checkpoint (written about once a second after a confirm): at or before where the slot was.
        var logged = Regex.Match(worker.Output, "Events committed after ([0-9A-F]+/[0-9A-F]+) \\(its transaction committed at [^)]+\\) and before ([0-9A-F]+/[0-9A-F]+) were not relayed");
        Assert.True(logged.Success, "the gap is logged with its bounds");
        Assert.True((ulong)NpgsqlLogSequenceNumber.Parse(logged.Groups[1].Value) <= confirmed, $"{logged.Groups[1].Value} is after the slot's {new NpgsqlLogSequenceNumber(confirmed)}");
        using var http = new HttpClient { BaseAddress = new Uri(worker.ListeningUrl) };
        Assert.Matches(@"(?m)^cdc_slot_recreations_total(\{[^}]*\})? 1\b", await http.GetStringAsync("/metrics"));
        var ids = DeliveryAssert.Ids(outbox.ReadTopic(outbox.Topic("order")));
        Assert.Contains(after.Id.ToString(), ids);
        Assert.Contains(before.Id.ToString(), ids);
        await worker.TerminateAsync(TimeSpan.FromSeconds(30));
    }

    [Fact]
    public async Task A_slot_dropped_after_a_clean_stop_is_not_taken_for_a_first_start()
    {
        var servers = await fixture.GetAsync();
        await using var outbox = await OutboxHarness.CreateAsync(servers, output, ["order"]);
        await outbox.StartRelayAsync();
        await outbox.WaitForConfirmedAsync(await outbox.CommitAsync(new TestEvent("order", "o-1", "E")), Timeout);
        await outbox.StopRelayAsync(); // writes the last checkpoint
        await DropSlotAsync(outbox);

        using var worker = WorkerProcess.Start(Environment(outbox), output);
        await worker.WaitForExitAsync(Timeout);
        Assert.Equal(1, worker.ExitCode);
        Assert.Contains("does not exist any more", worker.Output);
        Assert.Equal(0UL, await outbox.ConfirmedFlushLsnAsync());
    }

    [Fact]
    public async Task A_checkpoint_written_by_another_server_is_reported_not_trusted()
    {
        var servers = await fixture.GetAsync();
        await using var outbox = await OutboxHarness.CreateAsync(servers, output, ["order"]);
        // What a connector on another cluster (a different system identifier) wrote for this database and slot.
        var database = new NpgsqlConnectionStringBuilder(servers.PostgresConnectionString).Database ?? "postgres";
        await using (var connection = new NpgsqlConnection(servers.PostgresConnectionString))
        {
            await connection.OpenAsync();
            database = connection.Database;
        }
        using (var producer = new ProducerBuilder<byte[], byte[]>(new ProducerConfig { BootstrapServers = servers.KafkaBootstrapServers }).Build())
        {
            var foreign = new SlotCheckpoint("1234567890", database, outbox.Options.Postgres.Slot, 0x1000000, DateTime.UtcNow.AddHours(-1));
            await producer.ProduceAsync(outbox.Options.Kafka.CheckpointTopic,
                new Message<byte[], byte[]> { Key = Encoding.UTF8.GetBytes(foreign.Key), Value = foreign.ToJson() });
        }

        using var worker = WorkerProcess.Start(Environment(outbox), output);
        await worker.WaitForExitAsync(Timeout);
        Assert.Equal(1, worker.ExitCode);
        Assert.Contains("A checkpoint of slot", worker.Output);
        Assert.Contains("written on server 1234567890", worker.Output);
    }

    static async Task InsertRowsAsync(string connectionString, string table, IEnumerable<TestEvent> events)
    {
        await using var connection = new NpgsqlConnection(connectionString);
        await connection.OpenAsync();
        await using var import = await connection.BeginBinaryImportAsync(
            $"COPY {table} (id, aggregate_type, aggregate_id, event_type, payload) FROM STDIN (FORMAT BINARY)");
        foreach (var e in events)
        {
            await import.StartRowAsync();
            await import.WriteAsync(e.Id, NpgsqlDbType.Uuid);
            await import.WriteAsync(e.AggregateType!, NpgsqlDbType.Text);
            await import.WriteAsync(e.AggregateId, NpgsqlDbType.Text);
            await import.WriteAsync(e.EventType, NpgsqlDbType.Text);
            await import.WriteAsync(e.Payload, NpgsqlDbType.Jsonb);
        }
        await import.CompleteAsync();
    }

    [Fact]
    public async Task The_initial_snapshot_relays_rows_already_there_and_those_committed_while_the_slot_is_created_each_exactly_once()
    {
        var servers = await fixture.GetAsync();
        await using var outbox = await OutboxHarness.CreateAsync(servers, output, ["order"],
            configure: o => o.Postgres.Snapshot = SnapshotMode.Initial);
        var existing = Enumerable.Range(0, 300).Select(i => new TestEvent("order", $"o-{i % 7}", $"Existing{i}")).ToList();
        foreach (var chunk in existing.Chunk(100))
            await InsertRowsAsync(outbox.ConnectionString, outbox.Options.Postgres.Table, chunk);

        // A writer commits one row after another while the relay starts and creates its slot.
        var during = new List<TestEvent>();
        using var stopWriting = new CancellationTokenSource();
        var writer = Task.Run(async () =>
        {
            for (var i = 0; !stopWriting.IsCancellationRequested; i++)
            {
                var e = new TestEvent("order", $"o-{i % 7}", $"During{i}");
                await outbox.CommitAsync(e);
                lock (during)
                    during.Add(e);
                await Task.Delay(5);
            }
        });
        await Task.Delay(300);
        await outbox.StartRelayAsync();
        await Task.Delay(1500);
        await stopWriting.CancelAsync();
        await writer;
        await outbox.WaitForConfirmedAsync(await outbox.CurrentWalLsnAsync(), Timeout);

        var written = existing.Concat(during).ToList();
        var records = outbox.ReadTopic(outbox.Topic("order"));
        Assert.Equal(0, DeliveryAssert.EveryEventOnce(written, DeliveryAssert.Ids(records)));
        DeliveryAssert.FirstDeliveriesInWrittenOrder(written, records);
        var origin = records.ToDictionary(r => DeliveryAssert.Header(r, "id"), r => OutboxEvent.Parser.ParseFrom(r.Message.Value).Source);
        Assert.All(existing, e => Assert.Equal(Origin.Snapshot, origin[e.Id.ToString()].Origin));
        Assert.All(existing, e => Assert.Equal(0UL, origin[e.Id.ToString()].CommitLsn));
        Assert.Contains(origin.Values, s => s.Origin == Origin.Wal);
        output.WriteLine($"{existing.Count} rows before, {during.Count} committed meanwhile: " +
                         $"{origin.Values.Count(s => s.Origin == Origin.Snapshot)} by the snapshot, {origin.Values.Count(s => s.Origin == Origin.Wal)} from the slot");
    }

    [Fact]
    public async Task Without_the_snapshot_setting_rows_already_in_the_table_are_not_relayed()
    {
        var servers = await fixture.GetAsync();
        await using var outbox = await OutboxHarness.CreateAsync(servers, output, ["order"]);
        await InsertRowsAsync(outbox.ConnectionString, outbox.Options.Postgres.Table, [new TestEvent("order", "o-1", "Old")]);
        await outbox.StartRelayAsync();
        var next = new TestEvent("order", "o-1", "New");
        await outbox.WaitForConfirmedAsync(await outbox.CommitAsync(next), Timeout);
        Assert.Equal([next.Id.ToString()], DeliveryAssert.Ids(outbox.ReadTopic(outbox.Topic("order"))));
    }

    [Fact]
    public async Task A_snapshot_killed_halfway_is_done_again_at_the_next_start_and_nothing_is_missed()
    {
        var servers = await fixture.GetAsync();
        await using var outbox = await OutboxHarness.CreateAsync(servers, output, ["order"]);
        var existing = Enumerable.Range(0, 30_000).Select(i => new TestEvent("order", $"o-{i % 11}", $"E{i}")).ToList();
        await InsertRowsAsync(outbox.ConnectionString, outbox.Options.Postgres.Table, existing);
        var environment = Environment(outbox);
        environment["Cdc__Postgres__Snapshot"] = "Initial";
        // Slow acknowledgements, so the kill comes while the snapshot is in flight.
        environment["Cdc__Kafka__Producer__linger.ms"] = "1000";
        environment["Cdc__Relay__MaxInFlightEvents"] = "2000";
        using (var first = WorkerProcess.Start(environment, output))
        {
            await first.WaitForOutputAsync("Relaying the snapshot", Timeout);
            await Task.Delay(1500);
            first.KillHard();
            await first.WaitForExitAsync(Timeout);
        }
        environment.Remove("Cdc__Kafka__Producer__linger.ms");
        using var second = WorkerProcess.Start(environment, output);
        await second.WaitForOutputAsync("was interrupted; relaying it again", Timeout);
        var after = new TestEvent("order", "o-1", "After");
        await outbox.WaitForConfirmedAsync(await outbox.CommitAsync(after), Timeout);
        var duplicates = DeliveryAssert.EveryEventOnce(existing.Append(after), DeliveryAssert.Ids(KafkaReader.ReadAll(outbox.BootstrapServers, outbox.Topic("order"), TimeSpan.FromMinutes(3))));
        output.WriteLine($"{duplicates} duplicates after the interrupted snapshot");
        await second.TerminateAsync(TimeSpan.FromSeconds(30));
    }

    [Fact]
    public async Task A_snapshot_of_500000_rows_keeps_memory_bounded_and_says_how_far_it_is()
    {
        var servers = await fixture.GetAsync();
        using var cluster = MockKafkaCluster.Start(brokers: 1);
        await using var outbox = await OutboxHarness.CreateAsync(servers, output, [], bootstrapServers: cluster.BootstrapServers);
        cluster.CreateTopic(outbox.Topic("order"), 6, 1);
        const int rows = 500_000;
        for (var start = 0; start < rows; start += 50_000)
            await InsertRowsAsync(outbox.ConnectionString, outbox.Options.Postgres.Table,
                Enumerable.Range(start, 50_000).Select(i => new TestEvent("order", $"o-{i % 1000}", "E", """{"amount":12.5,"note":"a payload of about a hundred bytes, like a small domain event"}""")));
        var environment = Environment(outbox);
        environment["Cdc__Postgres__Snapshot"] = "Initial";
        using var worker = WorkerProcess.Start(environment, output);
        await worker.WaitForOutputAsync("Streaming slot", Timeout);
        var last = await outbox.CommitAsync(new TestEvent("order", "o-1", "After"));
        await outbox.WaitForConfirmedAsync(last, TimeSpan.FromMinutes(5));

        var peak = worker.PeakRssBytes();
        using var http = new HttpClient { BaseAddress = new Uri(worker.ListeningUrl) };
        Assert.Matches(@"(?m)^cdc_snapshot_rows_total\{[^}]*origin=""snapshot""[^}]*\} 500000\b", await http.GetStringAsync("/metrics"));
        Assert.Contains($"The snapshot of {outbox.Options.Postgres.Table} read {rows} rows", worker.Output);
        output.WriteLine($"peak RSS {peak / 1024 / 1024} MB for a {rows}-row snapshot");
        // Bounded by the in-flight bound, not the table: far below what holding 500,000 events would take.
        Assert.True(peak < 300L * 1024 * 1024, $"peak RSS {peak / 1024 / 1024} MB");
        await worker.TerminateAsync(TimeSpan.FromSeconds(30));
    }

    [Fact]
    public async Task A_signal_re_publishes_rows_by_id_and_by_range_and_other_slots_signals_and_malformed_ones_are_skipped()
    {
        var servers = await fixture.GetAsync();
        await using var outbox = await OutboxHarness.CreateAsync(servers, output, ["order"], configure: o => o.Postgres.SignalPrefix = "cdc.signal." + o.Postgres.Slot);
        await outbox.StartRelayAsync();
        var prefix = outbox.Options.Postgres.SignalPrefix;
        var slot = outbox.Options.Postgres.Slot;
        var a = new TestEvent("order", "o-1", "A");
        var b = new TestEvent("order", "o-1", "B");
        var c = new TestEvent("order", "o-2", "C");
        await outbox.CommitAsync(a);
        await outbox.CommitAsync(b, c);
        var from = (await Sql.ScalarAsync<DateTime>(outbox.ConnectionString,
            $"SELECT min(created_at) FROM {outbox.Options.Postgres.Table}")).ToUniversalTime();

        async Task Signal(string json) => await outbox.WriteAsync([], commit: true,
            extraSql: $"SELECT pg_logical_emit_message(true, '{prefix}', '{json.Replace("'", "''")}')");
        await Signal($$"""{"slot":"{{slot}}","action":"republish","ids":["{{a.Id}}","{{c.Id}}"]}""");
        await Signal($$"""{"slot":"other_slot","action":"republish","ids":["{{b.Id}}"]}""");
        await Signal("""{"slot": oops""");
        await Signal($$"""{"slot":"{{slot}}","action":"republish","from":"{{from.AddSeconds(-1):O}}","to":"{{DateTime.UtcNow.AddMinutes(1):O}}"}""");
        var last = await outbox.CommitAsync(new TestEvent("order", "o-3", "Last"));
        await outbox.WaitForConfirmedAsync(last, Timeout);

        var records = outbox.ReadTopic(outbox.Topic("order")).OrderBy(r => r.Offset.Value).ToList();
        var republished = records.Where(r => OutboxEvent.Parser.ParseFrom(r.Message.Value).Source.Origin == Origin.Republish)
            .Select(r => DeliveryAssert.Header(r, "id")).ToList();
        // By ids: a and c; by range: a, b, c. The other slot's signal and the malformed one add nothing.
        Assert.Equal(2, republished.Count(id => id == a.Id.ToString()));
        Assert.Equal(1, republished.Count(id => id == b.Id.ToString()));
        Assert.Equal(2, republished.Count(id => id == c.Id.ToString()));
        Assert.Contains(outbox.Logs, l => l.Contains("Skipping a malformed signal"));
        Assert.All(records.Where(r => OutboxEvent.Parser.ParseFrom(r.Message.Value).Source.Origin == Origin.Republish),
            r => Assert.Equal(0UL, OutboxEvent.Parser.ParseFrom(r.Message.Value).Source.CommitLsn));
    }
}
