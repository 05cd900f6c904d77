using System.Collections.Concurrent;
using Cdc.Contracts.SchemaRegistry;
using Cdc.Publishing;
using Cdc.Replication;
using Cdc.Tests.Fixtures;
using Confluent.Kafka;

namespace Cdc.Tests.Unit;

/// <summary>The publisher with a Schema Registry: a topic's events wait for its schema id, then go out framed.</summary>
public partial class EventPublisherTests
{
    /// <summary>Answers as the test says per topic (unreachable until told otherwise); counts the questions.</summary>
    sealed class FakeSchemas : IValueSchemas
    {
        public readonly ConcurrentDictionary<string, ValueSchema> Answers = new();
        public readonly ConcurrentQueue<string> Asked = new();
        readonly ConcurrentDictionary<string, byte[]> _cached = new();

        public void Resolve(string topic, int id) =>
            Answers[topic] = new ValueSchema(SchemaResolution.Resolved, OutboxEventFraming.Prefix(id), topic + "-value");

        public bool TryGetCached(string topic, out byte[] prefix) => _cached.TryGetValue(topic, out prefix!);

        public Task<ValueSchema> ResolveAsync(string topic, CancellationToken ct)
        {
            Asked.Enqueue(topic);
            var answer = Answers.GetValueOrDefault(topic,
                new ValueSchema(SchemaResolution.Unreachable, null, topic + "-value", "Schema Registry unreachable: connection refused"));
            if (answer.Prefix is { } prefix)
                _cached[topic] = prefix;
            return Task.FromResult(answer);
        }
    }

    [Fact]
    public async Task While_the_registry_is_unreachable_a_topics_events_wait_unconfirmed_then_go_out_framed_in_order()
    {
        var schemas = new FakeSchemas();
        schemas.Resolve("t.dlq", 7);
        await using var f = new Fixture(schemas, "t.order");
        var ids = f.Publish(100, ("order", "o1", 10), ("order", "o2", 10));

        // Asked (and refused) at least twice, with backoff: nothing is produced, the transaction stays unconfirmed.
        await OutboxTopics.WaitUntilAsync(() => schemas.Asked.Count(t => t == "t.order") >= 2, Timeout, "the registry was asked again");
        Assert.Empty(f.Producer.Snapshot());
        Assert.Equal(0UL, f.Tracker.Confirmable);
        Assert.True(f.Status.DeliveryBlocked);

        schemas.Resolve("t.order", 257);
        var first = await f.Producer.WaitForAsync(Is(ids[0]));
        var second = await f.Producer.WaitForAsync(Is(ids[1]));
        Assert.Equal([ids[0], ids[1]], f.Producer.Snapshot().Select(p => p.Pending.Event.EventId));
        var value = KafkaRecordProducer.Value(first);
        Assert.Equal("00" + "00000101" + "00", Convert.ToHexString(value[..6]));
        Assert.Equal(first.Record.Value, value[6..]);
        Assert.Equal(ids[0], OutboxEventFraming.Parse(value).Id);
        f.Producer.Report(ErrorCode.NoError, first, second);
        await f.WaitConfirmableAsync(100);
        Assert.False(f.Status.DeliveryBlocked);
    }

    [Fact]
    public async Task Dead_letters_are_framed_with_the_dead_letter_topics_schema_id()
    {
        var schemas = new FakeSchemas();
        schemas.Resolve("t.order", 257);
        schemas.Resolve("t.dlq", 258);
        await using var f = new Fixture(schemas, "t.order");
        f.Producer.RefuseAtOnce = p => p.Record.Topic == "t.order" ? ErrorCode.InvalidRecord : null;
        var ids = f.Publish(100, ("order", "o1", 10));

        var deadLetter = await f.Producer.WaitForAsync(p => p.Record.Topic == "t.dlq");
        var value = KafkaRecordProducer.Value(deadLetter);
        Assert.Equal("00" + "00000102" + "00", Convert.ToHexString(value[..6]));
        Assert.Equal(ids[0], OutboxEventFraming.Parse(value).Id);
        f.Producer.Report(deadLetter, ErrorCode.NoError);
        await f.WaitConfirmableAsync(100);
    }

    [Fact]
    public async Task A_registry_that_refuses_the_connectors_credentials_stops_the_worker()
    {
        var schemas = new FakeSchemas();
        schemas.Answers["t.order"] = new ValueSchema(SchemaResolution.Fatal, null, "t.order-value", "The Schema Registry refused the connector (401)");
        await using var f = new Fixture(schemas, "t.order");
        f.Publish(100, ("order", "o1", 10));

        var failure = await f.Publisher.Failure.WaitAsync(Timeout);
        Assert.IsType<CdcStartupException>(failure);
        Assert.Contains("401", failure.Message);
        Assert.Empty(f.Producer.Snapshot());
        Assert.Equal(0UL, f.Tracker.Confirmable);
    }
}
