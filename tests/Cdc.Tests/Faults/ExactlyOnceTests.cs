using System.Text;
using System.Text.RegularExpressions;
using Cdc.Embedded;
using Cdc.Positions;
using Cdc.Tests.Fixtures;
using Confluent.Kafka;
using Xunit.Abstractions;

namespace Cdc.Tests.Faults;

/// <summary>
/// <c>Cdc:Kafka:Delivery=ExactlyOnce</c> on the Kafka-protocol mock: it accepts transactions and checks a transactional
/// producer's sequence numbers and epochs, but shows consumers aborted records too (no read_committed filtering, see
/// the environment notes). So these tests prove what the connector decides: one Kafka transaction per source
/// transaction, nothing committed produced again after a kill, a zombie fenced. The end-to-end property (a
/// read_committed consumer sees each event once, each source transaction whole) needs Apache Kafka
/// (CDC_TEST_KAFKA or Testcontainers), where <see cref="A_read_committed_consumer_sees_every_event_once_across_a_kill_on_Apache_Kafka"/> checks it.
/// </summary>
public class ExactlyOnceTests(ITestOutputHelper output, ServersFixture fixture) : IClassFixture<ServersFixture>
{
    static readonly TimeSpan Timeout = TimeSpan.FromSeconds(90);

    static Dictionary<string, string?> Environment(OutboxHarness outbox)
    {
        var environment = WorkerProcess.Environment(outbox.Options);
        environment["Cdc__Kafka__Delivery"] = "ExactlyOnce";
        environment["Cdc__Kafka__CheckpointTopic"] = outbox.Name + ".checkpoints";
        return environment;
    }

    static double Counter(string metrics, string name) =>
        double.Parse(Regex.Match(metrics, $@"(?m)^{name}(?:\{{[^}}]*\}})? (\S+)").Groups[1].Value, System.Globalization.CultureInfo.InvariantCulture);

    [Fact]
    public async Task Each_source_transaction_goes_in_one_Kafka_transaction_with_the_checkpoint_and_a_large_one_is_not_split()
    {
        var servers = await fixture.GetAsync();
        using var cluster = MockKafkaCluster.Start(brokers: 3);
        await using var outbox = await OutboxHarness.CreateAsync(servers, output, [], bootstrapServers: cluster.BootstrapServers);
        cluster.CreateTopic(outbox.Topic("order"), 3, 3);
        var environment = Environment(outbox);
        environment["Cdc__Relay__TransactionMaxEvents"] = "50";
        using var worker = WorkerProcess.Start(environment, output);
        await worker.WaitForOutputAsync("Streaming slot", Timeout);
        using var http = new HttpClient { BaseAddress = new Uri(worker.ListeningUrl) };
        var before = Counter(await http.GetStringAsync("/metrics"), "cdc_kafka_transactions_total");

        var written = new List<TestEvent>();
        ulong last = 0;
        for (var t = 0; t < 4; t++)
        {
            var events = Enumerable.Range(0, 20).Select(i => new TestEvent("order", $"o-{i % 3}", $"T{t}E{i}")).ToArray();
            written.AddRange(events);
            last = await outbox.CommitAsync(events);
            await outbox.WaitForConfirmedAsync(last, Timeout); // one at a time: each its own Kafka transaction
        }
        // Larger than TransactionMaxEvents: still one Kafka transaction, never split.
        var large = Enumerable.Range(0, 400).Select(i => new TestEvent("order", $"o-{i % 3}", $"Large{i}")).ToArray();
        written.AddRange(large);
        last = await outbox.CommitAsync(large);
        await outbox.WaitForConfirmedAsync(last, Timeout);

        Assert.Equal(5, Counter(await http.GetStringAsync("/metrics"), "cdc_kafka_transactions_total") - before);
        Assert.Equal(0, DeliveryAssert.EveryEventOnce(written, DeliveryAssert.Ids(outbox.ReadTopic(outbox.Topic("order")))));
        // The checkpoint went with them: its last record is the last source transaction's end.
        var checkpoints = KafkaReader.ReadAll(cluster.BootstrapServers, outbox.Name + ".checkpoints")
            .Select(r => SlotCheckpoint.FromJson(r.Message.Value)!).Where(c => c.Slot == outbox.Options.Postgres.Slot).ToList();
        Assert.True(checkpoints[^1].ConfirmedLsn >= last - 1000 && checkpoints[^1].ConfirmedLsn <= last, $"{checkpoints[^1]} vs {last:X}");
        Assert.Contains("Exactly-once delivery as cdc-", worker.Output);
        await worker.TerminateAsync(TimeSpan.FromSeconds(30));
    }

    [Fact]
    public async Task After_a_kill_nothing_already_committed_to_Kafka_is_produced_again()
    {
        var servers = await fixture.GetAsync();
        using var cluster = MockKafkaCluster.Start(brokers: 3);
        await using var outbox = await OutboxHarness.CreateAsync(servers, output, [], bootstrapServers: cluster.BootstrapServers);
        cluster.CreateTopic(outbox.Topic("order"), 3, 3);
        var environment = Environment(outbox);
        // The slot is confirmed only at a clean stop: after the kill, PostgreSQL resends everything from the start.
        environment["Cdc__Relay__ConfirmInterval"] = "01:00:00";
        var written = new List<TestEvent>();
        using (var first = WorkerProcess.Start(environment, output))
        {
            await first.WaitForOutputAsync("Streaming slot", Timeout);
            for (var t = 0; t < 10; t++)
            {
                var events = Enumerable.Range(0, 10).Select(i => new TestEvent("order", $"o-{i % 4}", $"T{t}E{i}")).ToArray();
                written.AddRange(events);
                await outbox.CommitAsync(events);
            }
            await OutboxTopics.WaitUntilAsync(() => outbox.ReadTopic(outbox.Topic("order")).Count >= written.Count, Timeout, "every event is in Kafka");
            await Task.Delay(500); // and its transaction committed
            first.KillHard();
            await first.WaitForExitAsync(Timeout);
        }
        var resentFrom = await outbox.ConfirmedFlushLsnAsync();

        using var second = WorkerProcess.Start(environment, output);
        await second.WaitForOutputAsync("Streaming slot", Timeout);
        var after = new TestEvent("order", "o-1", "After");
        written.Add(after);
        var last = await outbox.CommitAsync(after);
        await OutboxTopics.WaitUntilAsync(() => outbox.ReadTopic(outbox.Topic("order")).Count >= written.Count, Timeout, "the new event is in Kafka");
        await Task.Delay(1000);

        var ids = DeliveryAssert.Ids(outbox.ReadTopic(outbox.Topic("order")));
        Assert.Equal(0, DeliveryAssert.EveryEventOnce(written, ids));
        Assert.Matches("source transactions committed before [0-9A-F]+/[0-9A-F]+ are in Kafka already", second.Output);
        output.WriteLine($"the slot resent from {new NpgsqlTypes.NpgsqlLogSequenceNumber(resentFrom)}; {ids.Count} records for {written.Count} events");
        await second.TerminateAsync(TimeSpan.FromSeconds(30));
        Assert.True(await outbox.ConfirmedFlushLsnAsync() >= last);
    }

    [Fact]
    public async Task A_fenced_producer_ends_the_session_and_the_next_one_relays_what_it_could_not_commit()
    {
        var servers = await fixture.GetAsync();
        using var cluster = MockKafkaCluster.Start(brokers: 3);
        await using var outbox = await OutboxHarness.CreateAsync(servers, output, [], bootstrapServers: cluster.BootstrapServers);
        cluster.CreateTopic(outbox.Topic("order"), 3, 3);
        using var worker = WorkerProcess.Start(Environment(outbox), output);
        await worker.WaitForOutputAsync("Exactly-once delivery as ", Timeout);
        await outbox.WaitForConfirmedAsync(await outbox.CommitAsync(new TestEvent("order", "o-1", "Before")), Timeout);

        // What a broker answers a zombie after another producer registered its transactional id. (The mock itself gives a
        // second InitProducerId a new producer id instead of bumping the epoch, so it cannot fence by itself.)
        cluster.PushRequestErrors(MockKafkaCluster.ProduceApiKey, ErrorCode.InvalidProducerEpoch);
        var fenced = new TestEvent("order", "o-1", "WhileFenced");
        var last = await outbox.CommitAsync(fenced);

        await outbox.WaitForConfirmedAsync(last, Timeout);
        Assert.Matches("(?i)fenced", worker.Output);
        Assert.Contains("Stream interrupted", worker.Output);
        Assert.Contains(fenced.Id.ToString(), DeliveryAssert.Ids(outbox.ReadTopic(outbox.Topic("order"))));
        Assert.Equal(2, Regex.Matches(worker.Output, "Exactly-once delivery as ").Count);
        await worker.TerminateAsync(TimeSpan.FromSeconds(30));
    }

    [Fact]
    public void Replicas_of_one_slot_derive_one_transactional_id_so_the_second_fences_the_first()
    {
        var a = Cdc.Relay.RelaySession.TransactionalId(new Cdc.Replication.SlotIdentity("7321", "shop", "cdc_outbox"));
        var b = Cdc.Relay.RelaySession.TransactionalId(new Cdc.Replication.SlotIdentity("7321", "shop", "cdc_outbox"));
        Assert.Equal(a, b);
        Assert.NotEqual(a, Cdc.Relay.RelaySession.TransactionalId(new Cdc.Replication.SlotIdentity("7321", "shop", "other_slot")));
        Assert.NotEqual(a, Cdc.Relay.RelaySession.TransactionalId(new Cdc.Replication.SlotIdentity("9999", "shop", "cdc_outbox")));
    }

    [ApacheKafkaFact("shows aborted records to read_committed consumers")]
    public async Task A_read_committed_consumer_sees_every_event_once_across_a_kill_on_Apache_Kafka()
    {
        var servers = await fixture.GetAsync();
        Assert.Null(servers.MockCluster);
        await using var outbox = await OutboxHarness.CreateAsync(servers, output, ["order"]);
        var environment = Environment(outbox);
        environment["Cdc__Relay__ConfirmInterval"] = "01:00:00";
        var written = new List<TestEvent>();
        using (var first = WorkerProcess.Start(environment, output))
        {
            await first.WaitForOutputAsync("Streaming slot", Timeout);
            for (var t = 0; t < 20; t++)
            {
                var events = Enumerable.Range(0, 25).Select(i => new TestEvent("order", $"o-{i % 4}", $"T{t}E{i}")).ToArray();
                written.AddRange(events);
                await outbox.CommitAsync(events);
                if (t == 12)
                    first.KillHard();
            }
        }
        using var second = WorkerProcess.Start(environment, output);
        await second.WaitForOutputAsync("Streaming slot", Timeout);
        await OutboxTopics.WaitUntilAsync(() => ReadCommitted(outbox).Count >= written.Count, Timeout, "every event is visible");
        Assert.Equal(0, DeliveryAssert.EveryEventOnce(written, ReadCommitted(outbox)));
        await second.TerminateAsync(TimeSpan.FromSeconds(30));
    }

    static List<string> ReadCommitted(OutboxHarness outbox)
    {
        using var consumer = new ConsumerBuilder<byte[], byte[]>(new ConsumerConfig
        {
            BootstrapServers = outbox.BootstrapServers,
            GroupId = $"rc-{Guid.NewGuid():N}",
            IsolationLevel = IsolationLevel.ReadCommitted,
            AutoOffsetReset = AutoOffsetReset.Earliest,
            EnablePartitionEof = true,
        }).Build();
        consumer.Subscribe(outbox.Topic("order"));
        var ids = new List<string>();
        var eofs = new HashSet<int>();
        var deadline = DateTime.UtcNow.AddSeconds(30);
        while (DateTime.UtcNow < deadline && eofs.Count < 3)
        {
            var result = consumer.Consume(TimeSpan.FromMilliseconds(500));
            if (result is null)
                continue;
            if (result.IsPartitionEOF)
                eofs.Add(result.Partition.Value);
            else
                ids.Add(Encoding.UTF8.GetString(result.Message.Headers.GetLastBytes("id")));
        }
        return ids;
    }
}
