using Cdc.Consumer;
using Cdc.Contracts.SchemaRegistry;
using Cdc.Embedded;
using Cdc.Tests.Fixtures;
using Confluent.Kafka;
using Xunit.Abstractions;

namespace Cdc.Tests.SchemaRegistry;

/// <summary>
/// The connector with a Schema Registry (the fake one on loopback), real PostgreSQL and the Kafka-protocol test broker:
/// what reaches Kafka is framed with the ids the registry gave, and a registry that is down holds events back unconfirmed.
/// </summary>
public class SchemaRegistryEndToEndTests(ITestOutputHelper output, ServersFixture fixture) : IClassFixture<ServersFixture>
{
    static readonly TimeSpan Timeout = TimeSpan.FromSeconds(60);

    [Fact]
    public async Task Every_value_and_dead_letter_is_framed_with_the_id_registered_under_its_topics_subject()
    {
        var servers = await fixture.GetAsync();
        await using var registry = await FakeSchemaRegistry.StartAsync();
        await using var outbox = await OutboxHarness.CreateAsync(servers, output, ["order"],
            configure: o => o.Kafka.SchemaRegistry.Url = registry.Url);
        await outbox.StartRelayAsync();

        var events = Enumerable.Range(0, 6).Select(i => new TestEvent("order", $"o-{i % 2}", $"E{i}", $$"""{"i":{{i}}}""")).ToArray();
        var badHeaders = new TestEvent("order", "o-9", "Bad", "{}", "[1]");
        var commit = await outbox.CommitAsync([.. events, badHeaders]);
        await outbox.WaitForConfirmedAsync(commit, Timeout);

        var topic = outbox.Topic("order");
        var topicPrefix = OutboxEventFraming.Prefix(Assert.Single(registry.Versions($"{topic}-value")));
        var records = outbox.ReadTopic(topic);
        Assert.Equal(events.Select(e => e.Id.ToString()), records.OrderBy(r => r.Offset.Value).Select(r => DeliveryAssert.Header(r, "id")));
        foreach (var record in records)
        {
            Assert.Equal(topicPrefix, record.Message.Value[..topicPrefix.Length]);
            var evt = OutboxEventDeserializer.Instance.Deserialize(record.Message.Value, false,
                new SerializationContext(MessageComponentType.Value, topic));
            Assert.Equal(DeliveryAssert.Header(record, "id"), evt.Id);
            Assert.Equal(events.Single(e => e.Id.ToString() == evt.Id).EventType, evt.EventType);
        }

        var deadLetter = Assert.Single(outbox.ReadTopic(outbox.DeadLetterTopic));
        var deadLetterPrefix = OutboxEventFraming.Prefix(Assert.Single(registry.Versions($"{outbox.DeadLetterTopic}-value")));
        Assert.Equal(deadLetterPrefix, deadLetter.Message.Value[..deadLetterPrefix.Length]);
        Assert.Equal(badHeaders.Id.ToString(), OutboxEventFraming.Parse(deadLetter.Message.Value).Id);
        Assert.Contains("not an object", DeliveryAssert.Header(deadLetter, "error"));
        // Registered once per subject, whatever the number of events.
        Assert.Equal(2, registry.Requests.Count);
    }

    [Fact]
    public async Task While_the_registry_is_down_events_wait_and_the_slot_is_not_confirmed_past_them_then_they_go_out_framed()
    {
        var servers = await fixture.GetAsync();
        await using var registry = await FakeSchemaRegistry.StartAsync();
        await registry.StopAsync();
        await using var outbox = await OutboxHarness.CreateAsync(servers, output, ["order"],
            configure: o => o.Kafka.SchemaRegistry.Url = registry.Url);
        await outbox.StartRelayAsync();

        var before = await outbox.ConfirmedFlushLsnAsync();
        var events = Enumerable.Range(0, 5).Select(i => new TestEvent("order", "o-1", $"E{i}")).ToArray();
        var commit = await outbox.CommitAsync(events);
        await outbox.WaitForSentAsync(commit, Timeout);

        // Asked, refused by the network, asked again with backoff: nothing reaches Kafka, nothing is confirmed.
        await OutboxTopics.WaitUntilAsync(() => outbox.Status.DeliveryBlocked, Timeout, "delivery is blocked");
        await Task.Delay(TimeSpan.FromSeconds(3));
        Assert.Empty(outbox.ReadTopic(outbox.Topic("order")));
        var confirmed = await outbox.ConfirmedFlushLsnAsync();
        Assert.True(confirmed < commit, $"confirmed {confirmed:X} passed the commit {commit:X} of events not delivered");
        Assert.True(confirmed >= before);
        Assert.False(outbox.Status.Ready);

        await registry.RestartAsync();
        await outbox.WaitForConfirmedAsync(commit, Timeout);
        var records = outbox.ReadTopic(outbox.Topic("order")).OrderBy(r => r.Offset.Value).ToList();
        Assert.Equal(events.Select(e => e.Id.ToString()), records.Select(r => DeliveryAssert.Header(r, "id")));
        var prefix = OutboxEventFraming.Prefix(Assert.Single(registry.Versions($"{outbox.Topic("order")}-value")));
        Assert.All(records, r => Assert.Equal(prefix, r.Message.Value[..prefix.Length]));
        Assert.False(outbox.Status.DeliveryBlocked);
        // Said once while it lasted, and once when it ended.
        Assert.Single(outbox.Logs, l => l.Contains("Schema Registry at") && l.Contains("is unreachable"));
        Assert.Single(outbox.Logs, l => l.Contains("Schema Registry answers again"));
    }
}
