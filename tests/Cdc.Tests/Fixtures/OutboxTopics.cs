using System.Text;
using Cdc.Contracts;
using Cdc.Outbox.V1;
using Confluent.Kafka;
using Google.Protobuf;
using Timestamp = Google.Protobuf.WellKnownTypes.Timestamp;

namespace Cdc.Tests.Fixtures;

/// <summary>Records as the connector produces them (key = aggregate id, headers id and event_type, value OutboxEvent), for consumer tests that need no relay.</summary>
public static class OutboxTopics
{
    public static OutboxEvent Event(string aggregateType, string aggregateId, string eventType, string json = "{}") => new()
    {
        Id = Guid.CreateVersion7().ToString(),
        AggregateType = aggregateType,
        AggregateId = aggregateId,
        EventType = eventType,
        Payload = ByteString.CopyFromUtf8(json),
        PayloadContentType = ContentTypes.Json,
        CreatedAt = Timestamp.FromDateTime(DateTime.UtcNow),
    };

    public static async Task ProduceAsync(string bootstrapServers, string topic, IEnumerable<OutboxEvent> events)
    {
        using var producer = new ProducerBuilder<byte[], byte[]>(new ProducerConfig { BootstrapServers = bootstrapServers, EnableIdempotence = true }).Build();
        foreach (var evt in events)
            await producer.ProduceAsync(topic, new Message<byte[], byte[]>
            {
                Key = Encoding.UTF8.GetBytes(evt.AggregateId),
                Value = evt.ToByteArray(),
                Headers = new Headers { { HeaderNames.Id, Encoding.UTF8.GetBytes(evt.Id) }, { HeaderNames.EventType, Encoding.UTF8.GetBytes(evt.EventType) } },
            });
    }

    public static async Task ProduceRawAsync(string bootstrapServers, string topic, byte[] key, byte[] value)
    {
        using var producer = new ProducerBuilder<byte[], byte[]>(new ProducerConfig { BootstrapServers = bootstrapServers }).Build();
        await producer.ProduceAsync(topic, new Message<byte[], byte[]> { Key = key, Value = value });
    }

    /// <summary>The group's committed offset per partition of the topic (-1001 = none), read without joining the group.</summary>
    public static Dictionary<int, long> CommittedOffsets(string bootstrapServers, string groupId, string topic, int partitions)
    {
        using var consumer = new ConsumerBuilder<Ignore, Ignore>(new ConsumerConfig { BootstrapServers = bootstrapServers, GroupId = groupId }).Build();
        return consumer.Committed(Enumerable.Range(0, partitions).Select(p => new TopicPartition(topic, p)), TimeSpan.FromSeconds(10))
            .ToDictionary(o => o.Partition.Value, o => o.Offset.Value);
    }

    /// <summary>Polls <paramref name="condition"/> until it holds; fails with <paramref name="what"/> after the timeout.</summary>
    public static async Task WaitUntilAsync(Func<bool> condition, TimeSpan timeout, string what)
    {
        var deadline = DateTime.UtcNow + timeout;
        while (!condition())
        {
            if (DateTime.UtcNow > deadline)
                throw new TimeoutException($"Timed out after {timeout} waiting until {what}");
            await Task.Delay(50);
        }
    }
}
