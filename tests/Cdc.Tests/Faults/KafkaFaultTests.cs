using System.Text;
using Cdc.Embedded;
using Cdc.Outbox.V1;
using Cdc.Tests.Fixtures;
using Confluent.Kafka;
using Xunit.Abstractions;

namespace Cdc.Tests.Faults;

/// <summary>
/// Kafka answering with errors, slowly, or not at all. Tests that inject faults use a mock cluster of their own
/// (librdkafka's Kafka-protocol test broker) so other tests are not disturbed.
/// </summary>
public class KafkaFaultTests(ITestOutputHelper output, ServersFixture fixture) : IClassFixture<ServersFixture>
{
    static readonly TimeSpan Timeout = TimeSpan.FromSeconds(90);

    [Fact]
    public async Task Retriable_produce_errors_and_slow_brokers_are_retried_without_loss_or_dead_letters()
    {
        var servers = await fixture.GetAsync();
        using var cluster = MockKafkaCluster.Start(brokers: 3);
        await using var outbox = await OutboxHarness.CreateAsync(servers, output, [], bootstrapServers: cluster.BootstrapServers,
            // One request in flight: with librdkafka's default of 5, the mock cluster lost 2 acknowledged records in
            // 4 of 12 runs under these injected errors, and none in 12 runs with 1. It appears to accept an idempotent
            // producer's later sequence numbers while an earlier batch is being retried, where Kafka answers
            // OUT_OF_ORDER_SEQUENCE_NUMBER; the retried batch is then taken as a duplicate. Most likely a limit of the mock (the
            // relay confirmed only what librdkafka reported delivered); to be confirmed against Apache Kafka (CDC_TEST_KAFKA).
            configure: o => o.Kafka.Producer["max.in.flight.requests.per.connection"] = "1");
        cluster.CreateTopic(outbox.Topic("order"), 3, 3);
        cluster.CreateTopic(outbox.DeadLetterTopic, 1, 3);
        await outbox.StartRelayAsync();

        cluster.PushRequestErrors(MockKafkaCluster.ProduceApiKey,
            ErrorCode.NotEnoughReplicas, ErrorCode.NotEnoughReplicas, ErrorCode.NotLeaderForPartition,
            ErrorCode.RequestTimedOut, ErrorCode.NotEnoughReplicasAfterAppend, ErrorCode.NotLeaderForPartition);
        for (var broker = 1; broker <= 3; broker++)
            cluster.SetBrokerRtt(broker, 300);

        var written = new List<TestEvent>();
        ulong lastCommit = 0;
        for (var t = 0; t < 10; t++)
        {
            var batch = Enumerable.Range(0, 10).Select(i => new TestEvent("order", $"o-{i % 4}", $"E{t}_{i}")).ToArray();
            written.AddRange(batch);
            lastCommit = await outbox.CommitAsync(batch);
        }
        await outbox.WaitForConfirmedAsync(lastCommit, Timeout);
        for (var broker = 1; broker <= 3; broker++)
            cluster.SetBrokerRtt(broker, 0);

        var records = outbox.ReadTopic(outbox.Topic("order"));
        var duplicates = DeliveryAssert.EveryEventOnce(written, DeliveryAssert.Ids(records));
        Assert.Empty(outbox.ReadTopic(outbox.DeadLetterTopic));
        DeliveryAssert.FirstDeliveriesInWrittenOrder(written, records);
        output.WriteLine($"{written.Count} written, {duplicates} duplicates");
    }

    [Fact]
    public async Task A_record_larger_than_the_producer_allows_goes_to_the_dead_letter_topic_without_its_payload()
    {
        var servers = await fixture.GetAsync();
        await using var outbox = await OutboxHarness.CreateAsync(servers, output, ["order"]);
        await outbox.StartRelayAsync();

        var large = new TestEvent("order", "o-1", "Huge", "{\"data\":\"" + new string('x', 1_200_000) + "\"}");
        var next = new TestEvent("order", "o-1", "Next");
        await outbox.WaitForConfirmedAsync(await outbox.CommitAsync(large, next), Timeout);

        Assert.Equal([next.Id.ToString()], DeliveryAssert.Ids(outbox.ReadTopic(outbox.Topic("order"))));
        var dead = Assert.Single(outbox.ReadTopic(outbox.DeadLetterTopic));
        Assert.Equal(large.Id.ToString(), Encoding.UTF8.GetString(dead.Message.Key));
        Assert.Contains("MsgSizeTooLarge", Encoding.UTF8.GetString(dead.Message.Headers.GetLastBytes("error")));
        var evt = OutboxEvent.Parser.ParseFrom(dead.Message.Value);
        Assert.True(evt.Payload.IsEmpty);
        Assert.Equal("Huge", evt.EventType);
    }

    [Fact]
    public async Task An_authorization_error_stops_the_worker_with_a_message_and_confirms_nothing_past_it()
    {
        var servers = await fixture.GetAsync();
        using var cluster = MockKafkaCluster.Start(brokers: 1);
        await using var outbox = await OutboxHarness.CreateAsync(servers, output, [], bootstrapServers: cluster.BootstrapServers);
        cluster.CreateTopic(outbox.Topic("order"), 1, 1);
        using var worker = WorkerProcess.Start(WorkerProcess.Environment(outbox.Options), output);
        await worker.WaitForOutputAsync("Streaming slot", Timeout);
        var before = await outbox.CommitAsync(new TestEvent("order", "o-1", "Allowed"));
        await outbox.WaitForConfirmedAsync(before, Timeout);

        cluster.PushRequestErrors(MockKafkaCluster.ProduceApiKey, Enumerable.Repeat(ErrorCode.TopicAuthorizationFailed, 10).ToArray());
        var refused = await outbox.CommitAsync(new TestEvent("order", "o-1", "Refused"));
        await worker.WaitForExitAsync(Timeout);

        Assert.Equal(1, worker.ExitCode);
        Assert.Contains("TopicAuthorizationFailed", worker.Output);
        Assert.Contains("Check the producer's credentials, ACLs", worker.Output);
        Assert.True(await outbox.ConfirmedFlushLsnAsync() < refused, "the slot moved past an event Kafka refused");
    }

    [Fact]
    public async Task An_unreachable_broker_at_start_is_waited_for_named_once_and_streamed_to_when_it_answers()
    {
        var servers = await fixture.GetAsync();
        using var cluster = MockKafkaCluster.Start(brokers: 1);
        await using var outbox = await OutboxHarness.CreateAsync(servers, output, [], bootstrapServers: cluster.BootstrapServers);
        cluster.CreateTopic(outbox.Topic("order"), 1, 1);
        cluster.SetAllBrokersDown();
        using var worker = WorkerProcess.Start(WorkerProcess.Environment(outbox.Options), output);
        await worker.WaitForOutputAsync($"No Kafka broker answered at {cluster.BootstrapServers} (Cdc:Kafka:BootstrapServers)", Timeout);
        // Several attempts later: still waiting, not ready, said once.
        await Task.Delay(TimeSpan.FromSeconds(12));
        Assert.False(worker.HasExited, "the worker should wait for the broker, not exit");
        using var http = new HttpClient { BaseAddress = new Uri(worker.ListeningUrl) };
        Assert.Equal(System.Net.HttpStatusCode.ServiceUnavailable, (await http.GetAsync("/readyz")).StatusCode);

        cluster.SetAllBrokersUp();
        await worker.WaitForOutputAsync("Streaming slot", Timeout);
        var written = new TestEvent("order", "o-1", "AfterTheWait");
        await outbox.WaitForConfirmedAsync(await outbox.CommitAsync(written), Timeout);
        Assert.Equal([written.Id.ToString()], DeliveryAssert.Ids(outbox.ReadTopic(outbox.Topic("order"))));
        Assert.Equal(System.Net.HttpStatusCode.OK, (await http.GetAsync("/readyz")).StatusCode);
        Assert.Single(System.Text.RegularExpressions.Regex.Matches(worker.Output, "No Kafka broker answered"));
        Assert.DoesNotContain("   at ", worker.Output);
    }
}
