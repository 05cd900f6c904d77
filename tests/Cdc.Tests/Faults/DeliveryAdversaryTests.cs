using System.Diagnostics;
using System.Text;
using Cdc.Embedded;
using Cdc.Outbox.V1;
using Cdc.Tests.Fixtures;
using Confluent.Kafka;
using Xunit.Abstractions;

namespace Cdc.Tests.Faults;

/// <summary>
/// The delivery path's edge cases on a Kafka-protocol test broker of each test's own (librdkafka's mock cluster):
/// topics that do not exist on a cluster that does not create them, dead-letter topics missing, stops while blocked.
/// </summary>
public class DeliveryAdversaryTests(ITestOutputHelper output, ServersFixture fixture) : IClassFixture<ServersFixture>
{
    static readonly TimeSpan Timeout = TimeSpan.FromSeconds(120);

    static void NoAutoCreate(Cdc.Configuration.CdcOptions o)
    {
        o.Kafka.Producer["allow.auto.create.topics"] = "false";
        o.Kafka.Producer["max.in.flight.requests.per.connection"] = "1";
    }

    [Fact]
    public async Task A_missing_topic_holds_back_only_its_events_and_they_follow_in_order_once_it_is_created()
    {
        var servers = await fixture.GetAsync();
        using var cluster = MockKafkaCluster.Start(brokers: 3);
        await using var outbox = await OutboxHarness.CreateAsync(servers, output, [], bootstrapServers: cluster.BootstrapServers, configure: NoAutoCreate);
        cluster.CreateTopic(outbox.Topic("order"), 3, 3);
        cluster.CreateTopic(outbox.DeadLetterTopic, 1, 3);
        await outbox.StartRelayAsync();

        var healthy = new List<TestEvent>();
        var stray = new List<TestEvent>();
        ulong firstStrayCommit = 0, lastCommit = 0;
        for (var t = 0; t < 10; t++)
        {
            var o = new TestEvent("order", $"o-{t % 3}", $"Order{t}");
            var s = new TestEvent("stray", "s-1", $"Stray{t}");
            healthy.Add(o);
            stray.Add(s);
            lastCommit = await outbox.CommitAsync(o, s);
            if (firstStrayCommit == 0)
                firstStrayCommit = lastCommit;
        }
        // The healthy topic's events arrive although the slot cannot move past the stray ones.
        var deadline = DateTime.UtcNow + Timeout;
        while (DeliveryAssert.Ids(outbox.ReadTopic(outbox.Topic("order"))).Distinct().Count() < healthy.Count)
        {
            outbox.AssertRelayRunning();
            Assert.True(DateTime.UtcNow < deadline, "the healthy topic's events did not all arrive while another topic was missing");
            await Task.Delay(500);
        }
        Assert.True(await outbox.ConfirmedFlushLsnAsync() < firstStrayCommit, "confirmed past an event whose topic does not exist");
        await Task.Delay(TimeSpan.FromSeconds(5));
        Assert.True(outbox.Status.DeliveryBlocked, "cdc_delivery_blocked should say the stray topic is blocked");
        Assert.False(outbox.Status.Ready);
        Assert.Single(outbox.Logs, l => l.Contains($"Topic {outbox.Topic("stray")} does not exist"));

        cluster.CreateTopic(outbox.Topic("stray"), 1, 3);
        await outbox.WaitForConfirmedAsync(lastCommit, Timeout);

        var orders = outbox.ReadTopic(outbox.Topic("order"));
        Assert.Equal(healthy.Count, orders.Count); // no re-send loop on the healthy topic
        var strays = outbox.ReadTopic(outbox.Topic("stray"));
        DeliveryAssert.EveryEventOnce(stray, DeliveryAssert.Ids(strays));
        DeliveryAssert.FirstDeliveriesInWrittenOrder(stray, strays);
        Assert.False(outbox.Status.DeliveryBlocked);
    }

    [Fact]
    public async Task A_missing_dead_letter_topic_holds_back_only_the_dead_letters_and_they_follow_once_it_is_created()
    {
        var servers = await fixture.GetAsync();
        using var cluster = MockKafkaCluster.Start(brokers: 1);
        await using var outbox = await OutboxHarness.CreateAsync(servers, output, [], bootstrapServers: cluster.BootstrapServers,
            aggregateTypeNullable: true, configure: NoAutoCreate);
        cluster.CreateTopic(outbox.Topic("order"), 3, 1);
        await outbox.StartRelayAsync();

        var unroutable = new TestEvent(null, "x-1", "NoType");
        var unroutableCommit = await outbox.CommitAsync(unroutable);
        var after = new TestEvent("order", "o-1", "After");
        var lastCommit = await outbox.CommitAsync(after);
        var deadline = DateTime.UtcNow + Timeout;
        while (DeliveryAssert.Ids(outbox.ReadTopic(outbox.Topic("order"))).Count == 0)
        {
            outbox.AssertRelayRunning();
            Assert.True(DateTime.UtcNow < deadline, "an event behind a dead letter waiting for its topic did not arrive");
            await Task.Delay(500);
        }
        Assert.True(await outbox.ConfirmedFlushLsnAsync() < unroutableCommit, "confirmed past a dead letter that Kafka does not have");

        cluster.CreateTopic(outbox.DeadLetterTopic, 1, 1);
        await outbox.WaitForConfirmedAsync(lastCommit, Timeout);
        var dead = Assert.Single(outbox.ReadTopic(outbox.DeadLetterTopic));
        Assert.Equal(unroutable.Id.ToString(), Encoding.UTF8.GetString(dead.Message.Key));
    }

    [Fact]
    public async Task SIGTERM_while_a_topic_is_blocked_exits_promptly_without_confirming_past_its_events_and_a_restart_relays_them()
    {
        var servers = await fixture.GetAsync();
        using var cluster = MockKafkaCluster.Start(brokers: 1);
        await using var outbox = await OutboxHarness.CreateAsync(servers, output, [], bootstrapServers: cluster.BootstrapServers, configure: NoAutoCreate);
        cluster.CreateTopic(outbox.Topic("order"), 1, 1);
        await outbox.StartRelayAsync();

        var stray = new TestEvent("stray", "s-1", "Stray");
        var strayCommit = await outbox.CommitAsync(stray);
        var order = new TestEvent("order", "o-1", "Order");
        var lastCommit = await outbox.CommitAsync(order);
        var deadline = DateTime.UtcNow + Timeout;
        while (!outbox.Status.DeliveryBlocked)
        {
            Assert.True(DateTime.UtcNow < deadline, "the stray topic was never reported blocked");
            await Task.Delay(200);
        }

        var stopping = Stopwatch.StartNew();
        await outbox.StopRelayAsync();
        Assert.True(stopping.Elapsed < TimeSpan.FromSeconds(30), $"stopping took {stopping.Elapsed}");
        Assert.True(await outbox.ConfirmedFlushLsnAsync() < strayCommit, "confirmed past a blocked event at shutdown");

        cluster.CreateTopic(outbox.Topic("stray"), 1, 1);
        await outbox.StartRelayAsync();
        await outbox.WaitForConfirmedAsync(lastCommit, Timeout);
        DeliveryAssert.EveryEventOnce([stray], DeliveryAssert.Ids(outbox.ReadTopic(outbox.Topic("stray"))));
        DeliveryAssert.EveryEventOnce([order], DeliveryAssert.Ids(outbox.ReadTopic(outbox.Topic("order"))));
    }

    [Fact]
    public async Task A_producer_refused_the_idempotent_write_permission_stops_the_worker_with_a_message_instead_of_restarting_forever()
    {
        // Kafka answers InitProducerId with CLUSTER_AUTHORIZATION_FAILED when the principal lacks IDEMPOTENT_WRITE: an
        // authorization problem no retry fixes. The contract: stop the worker with a clear message.
        const short initProducerIdApiKey = 22;
        var servers = await fixture.GetAsync();
        using var cluster = MockKafkaCluster.Start(brokers: 1);
        await using var outbox = await OutboxHarness.CreateAsync(servers, output, [], bootstrapServers: cluster.BootstrapServers);
        cluster.CreateTopic(outbox.Topic("order"), 1, 1);
        // The slot exists first (so the event below is in it); then the principal loses the permission.
        await outbox.StartRelayAsync();
        await outbox.StopRelayAsync();
        cluster.PushRequestErrors(initProducerIdApiKey, Enumerable.Repeat(ErrorCode.ClusterAuthorizationFailed, 500).ToArray());
        outbox.StartRelay();
        var refused = await outbox.CommitAsync(new TestEvent("order", "o-1", "Refused"));

        var deadline = DateTime.UtcNow + TimeSpan.FromSeconds(90);
        Exception? stopped = null;
        while (stopped is null && DateTime.UtcNow < deadline)
        {
            try
            {
                outbox.AssertRelayRunning();
                await Task.Delay(250);
            }
            catch (Xunit.Sdk.XunitException e)
            {
                stopped = e;
            }
        }
        output.WriteLine($"restarts logged: {outbox.Logs.Count(l => l.Contains("Stream interrupted"))}");
        Assert.NotNull(stopped); // else: the worker restarted the stream for 90 s with an error no retry can fix
        Assert.Contains("ClusterAuthorizationFailed", stopped!.Message);
        Assert.True(await outbox.ConfirmedFlushLsnAsync() < refused);
    }

    [Theory]
    [InlineData(ErrorCode.MsgSizeTooLarge)]
    [InlineData(ErrorCode.InvalidRecord)]
    public async Task A_batch_refused_as_a_whole_without_naming_a_record_is_retried_alone_and_nothing_is_dead_lettered(ErrorCode code)
    {
        // The contract: a record Kafka refuses as a whole batch is retried alone before it is judged. A broker that refuses a
        // batch with INVALID_RECORD and no record_errors (a batch-level check) names no record: librdkafka gives every record
        // of the batch INVALID_RECORD. Each of these rows succeeds alone.
        var servers = await fixture.GetAsync();
        using var cluster = MockKafkaCluster.Start(brokers: 1);
        await using var outbox = await OutboxHarness.CreateAsync(servers, output, [], bootstrapServers: cluster.BootstrapServers,
            configure: o => o.Kafka.Producer["max.in.flight.requests.per.connection"] = "1");
        cluster.CreateTopic(outbox.Topic("order"), 1, 1);
        cluster.CreateTopic(outbox.DeadLetterTopic, 1, 1);
        await outbox.StartRelayAsync();
        var warm = new TestEvent("order", "o-0", "Warm");
        await outbox.WaitForConfirmedAsync(await outbox.CommitAsync(warm), Timeout);

        cluster.PushRequestErrors(MockKafkaCluster.ProduceApiKey, code);
        var written = Enumerable.Range(0, 5).Select(i => new TestEvent("order", "o-1", $"E{i}")).ToArray();
        await outbox.WaitForConfirmedAsync(await outbox.CommitAsync(written), Timeout);

        var records = outbox.ReadTopic(outbox.Topic("order"));
        var dead = outbox.ReadTopic(outbox.DeadLetterTopic);
        output.WriteLine($"{dead.Count} dead letters: {string.Join("; ", dead.Select(d => DeliveryAssert.Header(d, "error")))}");
        Assert.Empty(dead);
        DeliveryAssert.EveryEventOnce(written.Prepend(warm), DeliveryAssert.Ids(records));
        DeliveryAssert.FirstDeliveriesInWrittenOrder(written, records);
    }

    [Fact]
    public async Task A_batch_refused_as_too_large_under_load_is_sent_again_alone_in_order_and_nothing_is_dead_lettered()
    {
        // A batch refused as too large is a permanent error in librdkafka; with the gap-less guarantee the producer turns
        // fatal, the session resumes from the slot and sends the refused records again alone, ahead of what follows them.
        // What this mock cannot show is first-delivery order here: librdkafka may have queued the partition's next
        // ProduceRequest (base sequence n+1) before the refusal of sequence n arrives, and sends it; Kafka refuses it as
        // OUT_OF_ORDER_SEQUENCE_NUMBER (sequence n was never appended), but the mock checks sequence numbers only for
        // transactional producers (rdkafka_mock.c, rd_kafka_mock_validate_records) and appends it. (Seen in a
        // debug=msg,eos trace of this test: BaseSeq 7 refused, BaseSeq 8 delivered, both created before the response.)
        // So here: every event arrives, nothing is dead-lettered, and each aggregate's deliveries end in commit order
        // (the replay follows any stray record). The strict order is asserted on Apache Kafka by the test below.
        var servers = await fixture.GetAsync();
        using var cluster = MockKafkaCluster.Start(brokers: 3);
        await using var outbox = await OutboxHarness.CreateAsync(servers, output, [], bootstrapServers: cluster.BootstrapServers,
            configure: o => o.Kafka.Producer["linger.ms"] = "0"); // more, smaller batches queued behind the refused one
        cluster.CreateTopic(outbox.Topic("order"), 6, 3);
        cluster.CreateTopic(outbox.DeadLetterTopic, 1, 3);
        await outbox.StartRelayAsync();

        var written = new List<TestEvent>();
        for (var round = 0; round < 30; round++)
        {
            cluster.PushRequestErrors(MockKafkaCluster.ProduceApiKey, round % 2 == 0 ? ErrorCode.MsgSizeTooLarge : ErrorCode.RecordListTooLarge);
            ulong lastCommit = 0;
            for (var t = 0; t < 8; t++)
            {
                var batch = Enumerable.Range(0, 8).Select(i => new TestEvent("order", $"o-{(t + i) % 9}", $"R{round}T{t}E{i}")).ToArray();
                written.AddRange(batch);
                lastCommit = await outbox.CommitAsync(batch);
            }
            await outbox.WaitForConfirmedAsync(lastCommit, Timeout);
        }

        var records = outbox.ReadTopic(outbox.Topic("order"));
        Assert.Empty(outbox.ReadTopic(outbox.DeadLetterTopic));
        var duplicates = DeliveryAssert.EveryEventOnce(written, DeliveryAssert.Ids(records));
        output.WriteLine($"{written.Count} written, {duplicates} duplicates");
        DeliveryAssert.LastDeliveriesInWrittenOrder(written, records);
    }

    [ApacheKafkaFact("does not check the sequence numbers of non-transactional idempotent producers")]
    public async Task A_batch_refused_as_too_large_by_the_topic_never_lets_a_later_event_of_an_aggregate_reach_Kafka_first()
    {
        // The same on Apache Kafka, whose broker checks the idempotent producer's sequence numbers: a topic whose
        // max.message.bytes each record fits but a batch of them does not.
        var servers = await fixture.GetAsync();
        Assert.Null(servers.MockCluster);
        await using var outbox = await OutboxHarness.CreateAsync(servers, output, [], configure: o =>
        {
            o.Kafka.Producer["linger.ms"] = "20";
            o.Kafka.Producer["batch.size"] = "65536";
        });
        using (var admin = new AdminClientBuilder(new AdminClientConfig { BootstrapServers = outbox.BootstrapServers }).Build())
            await admin.CreateTopicsAsync([
                new Confluent.Kafka.Admin.TopicSpecification { Name = outbox.Topic("order"), NumPartitions = 6, ReplicationFactor = 1,
                    Configs = new() { ["max.message.bytes"] = "3000" } },
                new Confluent.Kafka.Admin.TopicSpecification { Name = outbox.DeadLetterTopic, NumPartitions = 1, ReplicationFactor = 1 },
            ]);
        await outbox.StartRelayAsync();

        var written = new List<TestEvent>();
        ulong lastCommit = 0;
        for (var t = 0; t < 100; t++)
        {
            var batch = Enumerable.Range(0, 8).Select(i => new TestEvent("order", $"o-{(t + i) % 9}", $"T{t}E{i}", $"{{\"pad\":\"{new string('x', 600)}\"}}")).ToArray();
            written.AddRange(batch);
            lastCommit = await outbox.CommitAsync(batch);
        }
        await outbox.WaitForConfirmedAsync(lastCommit, Timeout);

        var records = outbox.ReadTopic(outbox.Topic("order"));
        Assert.Empty(outbox.ReadTopic(outbox.DeadLetterTopic));
        DeliveryAssert.EveryEventOnce(written, DeliveryAssert.Ids(records));
        DeliveryAssert.FirstDeliveriesInWrittenOrder(written, records);
    }
}
