using System.Text;
using Cdc.Embedded;
using Cdc.Tests.Fixtures;
using Confluent.Kafka;
using NpgsqlTypes;
using Xunit.Abstractions;

namespace Cdc.Tests.EndToEnd;

/// <summary>
/// The slot never passes unacknowledged work. Each test has its own mock cluster (librdkafka's Kafka-protocol test
/// broker) so it can take every broker down without disturbing other tests.
/// </summary>
public class SlotSafetyTests(ITestOutputHelper output, ServersFixture fixture) : IClassFixture<ServersFixture>
{
    static readonly TimeSpan Timeout = TimeSpan.FromSeconds(90);

    [Fact]
    public async Task Commits_made_while_the_brokers_are_down_are_not_confirmed_until_they_are_acknowledged()
    {
        var servers = await fixture.GetAsync();
        using var cluster = MockKafkaCluster.Start(brokers: 3);
        await using var outbox = await OutboxHarness.CreateAsync(servers, output, [], bootstrapServers: cluster.BootstrapServers);
        cluster.CreateTopic(outbox.Topic("order"), 3, 3);
        await outbox.StartRelayAsync();

        var before = new TestEvent("order", "o-0", "Before");
        await outbox.WaitForConfirmedAsync(await outbox.CommitAsync(before), Timeout);
        var confirmedBefore = await outbox.ConfirmedFlushLsnAsync();

        cluster.SetAllBrokersDown();
        var whileDown = new List<TestEvent>();
        ulong firstDownCommit = 0, lastCommit = 0;
        for (var i = 0; i < 10; i++)
        {
            var events = new[] { new TestEvent("order", $"o-{i % 3}", $"Down{i}a"), new TestEvent("order", $"o-{i % 3}", $"Down{i}b") };
            whileDown.AddRange(events);
            lastCommit = await outbox.CommitAsync(events);
            if (firstDownCommit == 0)
                firstDownCommit = lastCommit;
        }

        // Other tables keep moving the server's WAL meanwhile; the slot must still hold at the first unacknowledged commit.
        await outbox.ExecuteAsync($"INSERT INTO public.{outbox.Name}_business (note) VALUES ('while down')");
        for (var i = 0; i < 30; i++)
        {
            await Task.Delay(100);
            var confirmed = await outbox.ConfirmedFlushLsnAsync();
            Assert.True(confirmed < firstDownCommit,
                $"slot confirmed {new NpgsqlLogSequenceNumber(confirmed)} past unacknowledged commit {new NpgsqlLogSequenceNumber(firstDownCommit)}");
        }
        Assert.False(outbox.Status.KafkaReachable && outbox.Status.InFlightEvents == 0, "the relay should see the brokers down or hold events in flight");

        cluster.SetAllBrokersUp();
        await outbox.WaitForConfirmedAsync(lastCommit, Timeout);
        var delivered = DeliveryAssert.Ids(outbox.ReadTopic(outbox.Topic("order")));
        var duplicates = DeliveryAssert.EveryEventOnce(whileDown.Prepend(before), delivered);
        output.WriteLine($"confirmed before the outage {new NpgsqlLogSequenceNumber(confirmedBefore)}; {duplicates} duplicates");
    }

    [Fact]
    public async Task A_failed_delivery_restarts_the_stream_from_the_slot_and_nothing_is_lost()
    {
        var servers = await fixture.GetAsync();
        using var cluster = MockKafkaCluster.Start(brokers: 3);
        await using var outbox = await OutboxHarness.CreateAsync(servers, output, [], bootstrapServers: cluster.BootstrapServers,
            configure: o => o.Kafka.Producer["message.timeout.ms"] = "1500");
        cluster.CreateTopic(outbox.Topic("order"), 3, 3);
        await outbox.StartRelayAsync();

        var written = new List<TestEvent>();
        async Task<ulong> Write(string name)
        {
            var events = Enumerable.Range(0, 5).Select(i => new TestEvent("order", $"o-{i}", $"{name}{i}")).ToArray();
            written.AddRange(events);
            return await outbox.CommitAsync(events);
        }

        await outbox.WaitForConfirmedAsync(await Write("Before"), Timeout);
        cluster.SetAllBrokersDown();
        var firstDownCommit = await Write("Down");
        // Longer than message.timeout.ms: these deliveries fail, and the relay must not confirm past them.
        for (var i = 0; i < 40; i++)
        {
            await Task.Delay(100);
            Assert.True(await outbox.ConfirmedFlushLsnAsync() < firstDownCommit, "slot confirmed past a failed delivery");
        }
        var lastCommit = await Write("StillDown");
        cluster.SetAllBrokersUp();
        lastCommit = Math.Max(lastCommit, await Write("After"));

        await outbox.WaitForConfirmedAsync(lastCommit, Timeout);
        var delivered = DeliveryAssert.Ids(outbox.ReadTopic(outbox.Topic("order")));
        var duplicates = DeliveryAssert.EveryEventOnce(written, delivered);
        output.WriteLine($"{written.Count} written, {delivered.Count} records, {duplicates} duplicates");
    }
}
