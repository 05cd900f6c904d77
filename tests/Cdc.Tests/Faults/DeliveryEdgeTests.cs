using System.Net;
using System.Text;
using System.Text.RegularExpressions;
using Cdc.Embedded;
using Cdc.Outbox.V1;
using Cdc.Tests.Fixtures;
using static Cdc.Tests.Fixtures.WorkerLoad;
using Confluent.Kafka;
using NpgsqlTypes;
using Xunit.Abstractions;

namespace Cdc.Tests.Faults;

/// <summary>
/// The delivery path's edges, each of which once lost events silently or wedged the stream: records Kafka refuses in a
/// batch or alone, dead letters Kafka refuses too, topics that do not exist, failures right after every start, and
/// deliveries that time out while later events are queued. Each test has a mock cluster of its own (librdkafka's
/// Kafka-protocol test broker). Injected produce errors run with one request in flight: the mock checks an idempotent
/// producer's sequence numbers only for transactional producers (see the environment notes).
/// </summary>
public class DeliveryEdgeTests(ITestOutputHelper output, ServersFixture fixture) : IClassFixture<ServersFixture>
{
    static readonly TimeSpan Timeout = TimeSpan.FromSeconds(90);

    static void OneInFlight(Cdc.Configuration.CdcOptions o) => o.Kafka.Producer["max.in.flight.requests.per.connection"] = "1";

    [Fact]
    public async Task An_unroutable_row_with_an_oversized_payload_goes_to_the_dead_letter_topic_without_it_and_the_stream_moves_on()
    {
        var servers = await fixture.GetAsync();
        using var cluster = MockKafkaCluster.Start(brokers: 3);
        await using var outbox = await OutboxHarness.CreateAsync(servers, output, [], payloadType: "bytea", bootstrapServers: cluster.BootstrapServers);
        cluster.CreateTopic(outbox.Topic("order"), 3, 3);
        cluster.CreateTopic(outbox.DeadLetterTopic, 1, 3);
        await outbox.StartRelayAsync();

        var payload = Convert.ToBase64String(new byte[1_500_000]);
        var illegal = new TestEvent("not a topic!", "o-1", "Huge", payload);
        var notAnObject = new TestEvent("order", "o-1", "HugeArray", payload, Headers: "[1]");
        var next = new TestEvent("order", "o-1", "Next", Convert.ToBase64String("ok"u8.ToArray()));
        var last = await outbox.CommitAsync(illegal, notAnObject, next);
        await outbox.WaitForConfirmedAsync(last, Timeout);

        Assert.Equal([next.Id.ToString()], DeliveryAssert.Ids(outbox.ReadTopic(outbox.Topic("order"))));
        var dead = outbox.ReadTopic(outbox.DeadLetterTopic).ToDictionary(r => Encoding.UTF8.GetString(r.Message.Key));
        Assert.Equal(2, dead.Count);
        foreach (var (e, reason) in new[] { (illegal, "does not make a valid Kafka topic name"), (notAnObject, "headers is a JSON array") })
        {
            var record = dead[e.Id.ToString()];
            var error = DeliveryAssert.Header(record, "error");
            Assert.Contains(reason, error);
            Assert.Contains("sent without its payload", error);
            var evt = OutboxEvent.Parser.ParseFrom(record.Message.Value);
            Assert.True(evt.Payload.IsEmpty);
            Assert.Equal(e.EventType, evt.EventType);
        }
        outbox.AssertRelayRunning();
    }

    [Fact]
    public async Task A_dead_letter_refused_even_as_key_and_headers_stops_the_relay_with_a_message_and_confirms_nothing_past_it()
    {
        var servers = await fixture.GetAsync();
        using var cluster = MockKafkaCluster.Start(brokers: 1);
        await using var outbox = await OutboxHarness.CreateAsync(servers, output, [], bootstrapServers: cluster.BootstrapServers, configure: o =>
        {
            OneInFlight(o);
            // Each refusal makes the producer fatal (gapless) and the relay resumes from the slot: keep the restarts quick.
            o.Relay.MaxRetryBackoff = TimeSpan.FromSeconds(1);
        });
        cluster.CreateTopic(outbox.Topic("order"), 1, 1);
        cluster.CreateTopic(outbox.DeadLetterTopic, 1, 1);
        await outbox.StartRelayAsync();
        var before = new TestEvent("order", "o-1", "Before");
        await outbox.WaitForConfirmedAsync(await outbox.CommitAsync(before), Timeout);

        // The dead-letter topic refuses every form, each in its batch and then alone: whole, without payload, key and headers
        // only. (Each refusal makes the producer fatal, gapless: the relay resumes from the slot and remembers the refusal.)
        cluster.PushRequestErrors(MockKafkaCluster.ProduceApiKey, Enumerable.Repeat(ErrorCode.InvalidRecord, 100).ToArray());
        var refused = await outbox.CommitAsync(new TestEvent("not a topic!", "o-1", "Refused"));
        var stopped = await Task.WhenAny(outbox.RelayTask!, Task.Delay(Timeout));
        Assert.Same(outbox.RelayTask, stopped);
        var error = await Assert.ThrowsAnyAsync<Exception>(() => outbox.RelayTask!);
        Assert.Contains("refused the dead letter of event", error.Message);
        Assert.Contains("even as key and headers only", error.Message);
        Assert.True(await outbox.ConfirmedFlushLsnAsync() < refused, "the slot moved past an event that is neither published nor dead-lettered");
    }

    [Fact]
    public async Task Records_refused_as_a_batch_too_large_are_sent_again_alone_and_keep_their_payloads()
    {
        var servers = await fixture.GetAsync();
        using var cluster = MockKafkaCluster.Start(brokers: 1);
        await using var outbox = await OutboxHarness.CreateAsync(servers, output, [], bootstrapServers: cluster.BootstrapServers,
            configure: o =>
            {
                OneInFlight(o);
                o.Kafka.Producer["linger.ms"] = "200"; // the transaction's rows go in one batch
            });
        cluster.CreateTopic(outbox.Topic("order"), 1, 1);
        cluster.CreateTopic(outbox.DeadLetterTopic, 1, 1);
        await outbox.StartRelayAsync();
        await outbox.WaitForConfirmedAsync(await outbox.CommitAsync(new TestEvent("order", "o-0", "Warm")), Timeout);

        // The broker refuses the next produce request (the batch) as too large; each record alone is fine.
        cluster.PushRequestErrors(MockKafkaCluster.ProduceApiKey, ErrorCode.MsgSizeTooLarge);
        var batch = Enumerable.Range(0, 10).Select(i => new TestEvent("order", $"o-{i % 2}", $"E{i}", $$"""{"i":{{i}}}""")).ToArray();
        await outbox.WaitForConfirmedAsync(await outbox.CommitAsync(batch), Timeout);

        var records = outbox.ReadTopic(outbox.Topic("order")).Where(r => DeliveryAssert.Header(r, "event_type") != "Warm").ToList();
        DeliveryAssert.EveryEventOnce(batch, DeliveryAssert.Ids(records));
        DeliveryAssert.FirstDeliveriesInWrittenOrder(batch, records);
        Assert.All(records, r => Assert.False(OutboxEvent.Parser.ParseFrom(r.Message.Value).Payload.IsEmpty));
        Assert.Empty(outbox.ReadTopic(outbox.DeadLetterTopic));
    }

    [Fact]
    public async Task A_topic_that_does_not_exist_holds_back_only_its_events_says_so_once_and_relays_them_in_order_once_it_exists()
    {
        var servers = await fixture.GetAsync();
        using var cluster = MockKafkaCluster.Start(brokers: 3);
        var healthyTopic = "";
        await using var outbox = await OutboxHarness.CreateAsync(servers, output, [], bootstrapServers: cluster.BootstrapServers);
        healthyTopic = outbox.Topic("order");
        cluster.CreateTopic(healthyTopic, 3, 3);
        cluster.CreateTopic(outbox.DeadLetterTopic, 1, 3);
        var environment = WorkerProcess.Environment(outbox.Options);
        environment["Cdc__Kafka__Producer__allow.auto.create.topics"] = "false";
        using var worker = WorkerProcess.Start(environment, output);
        await worker.WaitForOutputAsync("Streaming slot", Timeout);
        using var http = new HttpClient { BaseAddress = new Uri(worker.ListeningUrl) };

        // Steady traffic on the healthy topic, with a new aggregate type (no topic yet) in the middle.
        var healthy = new List<TestEvent>();
        var stray = new List<TestEvent>();
        ulong strayCommit = 0, lastCommit = 0;
        for (var t = 0; t < 30; t++)
        {
            var events = new List<TestEvent> { new("order", $"o-{t % 3}", $"H{t}") };
            if (t is 10 or 20)
                events.Add(new TestEvent("shipment", "s-1", $"S{t}"));
            healthy.AddRange(events.Where(e => e.AggregateType == "order"));
            stray.AddRange(events.Where(e => e.AggregateType == "shipment"));
            lastCommit = await outbox.CommitAsync([.. events]);
            if (t == 10)
                strayCommit = lastCommit;
            await Task.Delay(100);
        }
        await worker.WaitForOutputAsync($"Topic {outbox.Topic("shipment")} does not exist and could not be created", Timeout);
        await OutboxTopics.WaitUntilAsync(() => outbox.ReadTopic(healthyTopic).Count >= healthy.Count, Timeout, "the healthy topic has every event");
        await Task.Delay(TimeSpan.FromSeconds(3));

        // The healthy topic got each of its events once (no re-send loop); the slot waits for the stray ones.
        Assert.Equal(0, DeliveryAssert.EveryEventOnce(healthy, DeliveryAssert.Ids(outbox.ReadTopic(healthyTopic))));
        Assert.True(await outbox.ConfirmedFlushLsnAsync() < strayCommit, "the slot moved past events waiting for their topic");
        Assert.Equal(HttpStatusCode.ServiceUnavailable, (await http.GetAsync("/readyz")).StatusCode);
        Assert.Equal("1", Gauge(await http.GetStringAsync("/metrics"), "cdc_delivery_blocked"));
        Assert.False(worker.HasExited);

        cluster.CreateTopic(outbox.Topic("shipment"), 3, 3);
        await outbox.WaitForConfirmedAsync(lastCommit, Timeout);
        var strayRecords = outbox.ReadTopic(outbox.Topic("shipment"));
        Assert.Equal(0, DeliveryAssert.EveryEventOnce(stray, DeliveryAssert.Ids(strayRecords)));
        DeliveryAssert.FirstDeliveriesInWrittenOrder(stray, strayRecords);
        Assert.Equal(0, DeliveryAssert.EveryEventOnce(healthy, DeliveryAssert.Ids(outbox.ReadTopic(healthyTopic))));
        Assert.Equal(HttpStatusCode.OK, (await http.GetAsync("/readyz")).StatusCode);
        Assert.Equal("0", Gauge(await http.GetStringAsync("/metrics"), "cdc_delivery_blocked"));
        Assert.Single(Regex.Matches(worker.Output, "does not exist and could not be created"));
        Assert.Contains($"Topic {outbox.Topic("shipment")} exists now", worker.Output);
    }

    [Fact]
    public async Task The_backoff_grows_when_every_session_fails_right_after_it_opens()
    {
        var servers = await fixture.GetAsync();
        using var cluster = MockKafkaCluster.Start(brokers: 1);
        await using var outbox = await OutboxHarness.CreateAsync(servers, output, [], bootstrapServers: cluster.BootstrapServers, configure: o =>
        {
            OneInFlight(o);
            o.Kafka.Producer["message.timeout.ms"] = "500";
            o.Kafka.Producer["retry.backoff.ms"] = "50";
        });
        cluster.CreateTopic(outbox.Topic("order"), 1, 1);
        await outbox.StartRelayAsync();
        await outbox.WaitForConfirmedAsync(await outbox.CommitAsync(new TestEvent("order", "o-1", "Fine")), Timeout);

        // From now on every produce request fails (retriable): each session times out its first delivery and ends.
        cluster.PushRequestErrors(MockKafkaCluster.ProduceApiKey, Enumerable.Repeat(ErrorCode.NotEnoughReplicas, 100_000).ToArray());
        var stuck = await outbox.CommitAsync(new TestEvent("order", "o-1", "Stuck"));
        var started = DateTime.UtcNow;
        await Task.Delay(TimeSpan.FromSeconds(16));
        // The delivery failures' state; a checkpoint write at the slot's creation that timed out (500 ms) is another one.
        var interruptions = outbox.Logs.Count(l => l.Contains("Stream interrupted (kafka_delivery)"));
        var restarts = outbox.Logs.Count(l => l.Contains("Streaming slot")) - 1;
        output.WriteLine($"{restarts} sessions started in {(DateTime.UtcNow - started).TotalSeconds:F0} s after the failures began");
        // 0.5 + 1 + 2 + 4 + 8 s of backoff: at most 5 or 6 sessions; a backoff reset at every open gives 10 or more.
        Assert.InRange(restarts, 2, 6);
        Assert.Equal(1, interruptions); // said once, not per attempt
        Assert.True(await outbox.ConfirmedFlushLsnAsync() < stuck);
    }

    [Fact]
    public async Task A_delivery_that_times_out_while_a_later_event_of_the_aggregate_is_queued_keeps_first_deliveries_in_commit_order()
    {
        var servers = await fixture.GetAsync();
        using var cluster = MockKafkaCluster.Start(brokers: 1);
        await using var outbox = await OutboxHarness.CreateAsync(servers, output, [], bootstrapServers: cluster.BootstrapServers, configure: o =>
        {
            o.Kafka.Producer["message.timeout.ms"] = "1000";
            o.Kafka.Producer["request.timeout.ms"] = "900";
        });
        cluster.CreateTopic(outbox.Topic("order"), 1, 1);
        await outbox.StartRelayAsync();
        var written = new List<TestEvent>();
        async Task<ulong> Write(string name)
        {
            var e = new TestEvent("order", "o-1", name);
            written.Add(e);
            return await outbox.CommitAsync(e);
        }
        await outbox.WaitForConfirmedAsync(await Write("Before"), Timeout);

        // The broker holds its responses past message.timeout.ms while two events of one aggregate are in flight, a
        // third queued behind them; then answers promptly again.
        cluster.SetBrokerRtt(1, 2500);
        await Write("First");
        await Task.Delay(150);
        await Write("Second");
        await Task.Delay(150);
        await Write("Third");
        await Task.Delay(TimeSpan.FromSeconds(3));
        cluster.SetBrokerRtt(1, 0);
        var last = await Write("After");
        await outbox.WaitForConfirmedAsync(last, Timeout);

        var records = outbox.ReadTopic(outbox.Topic("order"));
        DeliveryAssert.EveryEventOnce(written, DeliveryAssert.Ids(records));
        DeliveryAssert.FirstDeliveriesInWrittenOrder(written, records);
        output.WriteLine(string.Join(" ", records.OrderBy(r => r.Offset.Value).Select(r => DeliveryAssert.Header(r, "event_type"))));
    }

    [Fact]
    public async Task An_in_flight_bound_as_large_as_the_producers_queue_with_many_dead_letters_neither_deadlocks_nor_hangs_the_stop()
    {
        var servers = await fixture.GetAsync();
        using var cluster = MockKafkaCluster.Start(brokers: 1);
        await using var outbox = await OutboxHarness.CreateAsync(servers, output, [], bootstrapServers: cluster.BootstrapServers, configure: o =>
        {
            o.Kafka.Producer["queue.buffering.max.messages"] = "5";
            o.Relay.MaxInFlightEvents = 5;
        });
        cluster.CreateTopic(outbox.Topic("order"), 1, 1);
        cluster.CreateTopic(outbox.DeadLetterTopic, 1, 1);
        await outbox.StartRelayAsync();

        var written = Enumerable.Range(0, 60).Select(i => new TestEvent(i % 2 == 0 ? "order" : "not routable!", $"o-{i % 4}", $"E{i}")).ToArray();
        ulong last = 0;
        foreach (var chunk in written.Chunk(6))
            last = await outbox.CommitAsync(chunk);
        await outbox.WaitForConfirmedAsync(last, Timeout);
        Assert.Equal(30, outbox.ReadTopic(outbox.Topic("order")).Count);
        Assert.Equal(30, outbox.ReadTopic(outbox.DeadLetterTopic).Count);

        var stopping = outbox.StopRelayAsync();
        Assert.Same(stopping, await Task.WhenAny(stopping, Task.Delay(TimeSpan.FromSeconds(30))));
    }
}
