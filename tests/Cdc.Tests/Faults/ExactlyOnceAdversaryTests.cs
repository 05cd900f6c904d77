using System.Text.RegularExpressions;
using Cdc.Embedded;
using Cdc.Outbox.V1;
using Cdc.Positions;
using Cdc.Tests.Fixtures;
using Npgsql;
using Xunit.Abstractions;

namespace Cdc.Tests.Faults;

/// <summary>
/// Adversarial review of issue 13's exactly-once delivery together with issue 10's table reads, on the Kafka-protocol
/// mock (which shows aborted records too, so these tests only look at what the connector decides after clean stops,
/// where nothing is aborted). Each test shows a problem of the code it was written against.
/// </summary>
public class ExactlyOnceAdversaryTests(ITestOutputHelper output, ServersFixture fixture) : IClassFixture<ServersFixture>
{
    static readonly TimeSpan Timeout = TimeSpan.FromSeconds(90);

    static Dictionary<string, string?> Environment(OutboxHarness outbox)
    {
        var environment = WorkerProcess.Environment(outbox.Options);
        environment["Cdc__Kafka__Delivery"] = "ExactlyOnce";
        environment["Cdc__Kafka__CheckpointTopic"] = outbox.Name + ".checkpoints";
        environment["Cdc__Postgres__BackfillMargin"] = "00:00:30";
        return environment;
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
                // The stopped worker's walsender has not gone yet.
            }
        }
    }

    List<SlotCheckpoint> Checkpoints(MockKafkaCluster cluster, OutboxHarness outbox) =>
        KafkaReader.ReadAll(cluster.BootstrapServers, outbox.Name + ".checkpoints")
            .Select(r => SlotCheckpoint.FromJson(r.Message.Value)).OfType<SlotCheckpoint>()
            .Where(c => c.Slot == outbox.Options.Postgres.Slot).ToList();

    /// <summary>
    /// Exactly once, the checkpoint is only written inside Kafka transactions, with <c>_lastEnd</c>, the end of the last
    /// source transaction streamed. The initial snapshot's Kafka transactions are committed before any source transaction
    /// was streamed: their checkpoint says LSN 0/0 and the snapshot still pending, and nothing writes a later one (the
    /// session's periodic and last checkpoints are skipped exactly once). After a clean stop, the next start finds the
    /// snapshot "interrupted" and relays every row again: every snapshot event twice in committed Kafka transactions.
    /// </summary>
    [Fact]
    public async Task After_a_clean_stop_that_follows_the_initial_snapshot_the_snapshot_is_not_relayed_again()
    {
        var servers = await fixture.GetAsync();
        using var cluster = MockKafkaCluster.Start(brokers: 3);
        await using var outbox = await OutboxHarness.CreateAsync(servers, output, [], bootstrapServers: cluster.BootstrapServers);
        cluster.CreateTopic(outbox.Topic("order"), 3, 3);
        var existing = Enumerable.Range(0, 200).Select(i => new TestEvent("order", $"o-{i % 5}", $"Existing{i}")).ToList();
        foreach (var e in existing)
            await outbox.CommitAsync(e); // before the slot exists: only the snapshot can relay them
        var environment = Environment(outbox);
        environment["Cdc__Postgres__Snapshot"] = "Initial";

        using (var first = WorkerProcess.Start(environment, output))
        {
            await first.WaitForOutputAsync("Streaming slot", Timeout);
            await first.WaitForOutputAsync("Every row of the snapshot is acknowledged", Timeout);
            await Task.Delay(2000);
            await first.TerminateAsync(TimeSpan.FromSeconds(30));
            Assert.Equal(0, first.ExitCode);
        }
        Assert.Equal(existing.Count, outbox.ReadTopic(outbox.Topic("order")).Count);
        output.WriteLine($"last checkpoint after the first run: {Checkpoints(cluster, outbox)[^1]} pending {Checkpoints(cluster, outbox)[^1].Pending}");

        using var second = WorkerProcess.Start(environment, output);
        await second.WaitForOutputAsync("Streaming slot", Timeout);
        var after = new TestEvent("order", "o-1", "After");
        await outbox.WaitForConfirmedAsync(await outbox.CommitAsync(after), Timeout);
        await second.TerminateAsync(TimeSpan.FromSeconds(30));

        Assert.DoesNotContain("was interrupted; relaying it again", second.Output);
        // Both runs stopped cleanly: nothing was aborted, so every record here is in a committed Kafka transaction.
        Assert.Equal(0, DeliveryAssert.EveryEventOnce(existing.Append(after), DeliveryAssert.Ids(outbox.ReadTopic(outbox.Topic("order")))));
    }

    /// <summary>
    /// The same LSN-0 checkpoint after a table read makes the next loss of the slot look like a first start. Exactly once
    /// with LostSlotPolicy=Backfill: the slot is lost once (the backfill relays the gap, its Kafka transaction's checkpoint
    /// says 0/0), the worker stops cleanly, the slot is lost again and an event is committed meanwhile. The next start
    /// reads a checkpoint with no confirmed position, takes the missing slot for a first start, creates a fresh one
    /// silently, and the event is never relayed.
    /// </summary>
    [Fact]
    public async Task A_slot_lost_again_after_a_backfill_is_still_known_lost_and_its_gap_relayed()
    {
        var servers = await fixture.GetAsync();
        using var cluster = MockKafkaCluster.Start(brokers: 3);
        await using var outbox = await OutboxHarness.CreateAsync(servers, output, [], bootstrapServers: cluster.BootstrapServers);
        cluster.CreateTopic(outbox.Topic("order"), 3, 3);
        var environment = Environment(outbox);
        environment["Cdc__Postgres__LostSlotPolicy"] = "Backfill";
        var written = new List<TestEvent>();

        async Task RunOnceAsync(TestEvent? commitWhileStreaming)
        {
            using var worker = WorkerProcess.Start(environment, output);
            await worker.WaitForOutputAsync("Streaming slot", Timeout);
            if (commitWhileStreaming is not null)
            {
                written.Add(commitWhileStreaming);
                await outbox.WaitForConfirmedAsync(await outbox.CommitAsync(commitWhileStreaming), Timeout);
            }
            await Task.Delay(2000);
            await worker.TerminateAsync(TimeSpan.FromSeconds(30));
            Assert.Equal(0, worker.ExitCode);
        }

        await RunOnceAsync(new TestEvent("order", "o-1", "First"));
        await DropSlotAsync(outbox);
        var firstGap = new TestEvent("order", "o-1", "InTheFirstGap");
        written.Add(firstGap);
        await outbox.CommitAsync(firstGap);

        await RunOnceAsync(null); // backfills the first gap, then stops with no new event
        Assert.Contains(firstGap.Id.ToString(), DeliveryAssert.Ids(outbox.ReadTopic(outbox.Topic("order"))));
        output.WriteLine($"last checkpoint after the backfill: {Checkpoints(cluster, outbox)[^1]}");

        await DropSlotAsync(outbox);
        var secondGap = new TestEvent("order", "o-1", "InTheSecondGap");
        written.Add(secondGap);
        await outbox.CommitAsync(secondGap);

        await RunOnceAsync(new TestEvent("order", "o-1", "Last"));
        DeliveryAssert.EveryEventOnce(written, DeliveryAssert.Ids(outbox.ReadTopic(outbox.Topic("order"))));
    }

    /// <summary>
    /// Exactly once, a missing topic holds the stream with the Kafka transaction open (the source transaction's Begin
    /// opened it). A broker aborts a transaction open longer than <c>transaction.timeout.ms</c> and bumps the producer's
    /// epoch, so the commit that follows is answered PRODUCER_FENCED (the mock enforces no transaction timeout, so the
    /// test gives that answer itself). The connector takes any commit failure of a single source transaction open that
    /// long for "a source transaction too large for a Kafka transaction" and stops the worker for good with advice to
    /// raise transaction.timeout.ms or leave exactly once — for one event waiting for a topic. The contract: a missing
    /// topic holds back what must wait and everything is relayed once the topic exists.
    /// </summary>
    [Fact]
    public async Task A_topic_missing_for_longer_than_the_transaction_timeout_does_not_stop_the_worker()
    {
        var servers = await fixture.GetAsync();
        using var cluster = MockKafkaCluster.Start(brokers: 3);
        await using var outbox = await OutboxHarness.CreateAsync(servers, output, [], bootstrapServers: cluster.BootstrapServers);
        cluster.CreateTopic(outbox.Topic("order"), 3, 3);
        cluster.CreateTopic(outbox.DeadLetterTopic, 1, 3);
        cluster.CreateTopic(outbox.Name + ".checkpoints", 1, 3);
        var environment = Environment(outbox);
        environment["Cdc__Kafka__Producer__allow.auto.create.topics"] = "false";
        environment["Cdc__Kafka__Producer__transaction.timeout.ms"] = "5000";
        using var worker = WorkerProcess.Start(environment, output);
        await worker.WaitForOutputAsync("Streaming slot", Timeout);
        await outbox.WaitForConfirmedAsync(await outbox.CommitAsync(new TestEvent("order", "o-1", "Before")), Timeout);

        var stray = new TestEvent("shipment", "s-1", "WaitsForItsTopic");
        var strayCommit = await outbox.CommitAsync(stray);
        await worker.WaitForOutputAsync($"Topic {outbox.Topic("shipment")} does not exist", Timeout);
        await Task.Delay(TimeSpan.FromSeconds(7)); // longer than transaction.timeout.ms: a broker has aborted the transaction
        const short endTxnApiKey = 26;
        cluster.PushRequestErrors(endTxnApiKey, Confluent.Kafka.ErrorCode.ProducerFenced);
        cluster.CreateTopic(outbox.Topic("shipment"), 1, 3);

        // Nothing else is committed meanwhile: the Kafka transaction holds this one source transaction only.
        await OutboxTopics.WaitUntilAsync(() => worker.HasExited || outbox.ConfirmedFlushLsnAsync().GetAwaiter().GetResult() >= strayCommit,
            Timeout, "the stream goes past the event or the worker exits");
        Assert.False(worker.HasExited, "the worker stopped: " + string.Join("\n", worker.Output.Split('\n').Where(l => l.Contains("crit:")).TakeLast(1)));
        var last = await outbox.CommitAsync(new TestEvent("order", "o-1", "After"));
        await outbox.WaitForConfirmedAsync(last, Timeout);
        Assert.Contains(stray.Id.ToString(), DeliveryAssert.Ids(outbox.ReadTopic(outbox.Topic("shipment"))));
        await worker.TerminateAsync(TimeSpan.FromSeconds(30));
    }
}
