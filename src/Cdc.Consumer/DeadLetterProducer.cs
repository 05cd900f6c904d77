using System.Globalization;
using System.Text;
using Cdc.Contracts;
using Cdc.Outbox.V1;
using Confluent.Kafka;
using Google.Protobuf;

namespace Cdc.Consumer;

/// <summary>
/// Sends records the consumer gives up on to the dead-letter topic, as the connector does: key = event id, headers
/// <c>id</c> and <c>error</c>, plus where the record came from; the value as it was.
/// </summary>
sealed class DeadLetterProducer : IDisposable
{
    public const string AttemptsHeader = "attempts";
    public const string OriginalTopicHeader = "original_topic";
    public const string OriginalPartitionHeader = "original_partition";
    public const string OriginalOffsetHeader = "original_offset";
    public const string ConsumerGroupHeader = "consumer_group";

    readonly IProducer<byte[], byte[]> _producer;
    readonly string _topic;
    readonly string _group;

    public DeadLetterProducer(OutboxConsumerOptions options)
    {
        var config = new ProducerConfig
        {
            BootstrapServers = options.BootstrapServers,
            EnableIdempotence = true,
            Acks = Acks.All,
            ClientId = $"cdc-consumer-dlq-{options.EffectiveConsumerName}",
        };
        foreach (var (key, value) in options.Producer)
            config.Set(key, value);
        _producer = new ProducerBuilder<byte[], byte[]>(config).Build();
        _topic = options.DeadLetterTopic;
        _group = options.GroupId;
    }

    /// <summary>An event whose handler kept failing. Returns once Kafka has acknowledged it.</summary>
    public Task SendAsync(ConsumeResult<Ignore, OutboxEvent> source, string eventId, Exception error, int attempts, CancellationToken ct) =>
        SendAsync(source.TopicPartitionOffset, source.Message.Headers, eventId, source.Message.Value.ToByteArray(),
            $"{error.GetType().Name}: {error.Message}", attempts, ct);

    /// <summary>A record that is not an OutboxEvent (the deserializer refused it).</summary>
    public Task SendUnreadableAsync(ConsumeResult<byte[], byte[]> source, string error, CancellationToken ct)
    {
        var id = source.Message.Headers.EventId() ?? $"{source.Topic}-{source.Partition.Value}-{source.Offset.Value}";
        return SendAsync(source.TopicPartitionOffset, source.Message.Headers, id, source.Message.Value, error, attempts: 0, ct);
    }

    async Task SendAsync(TopicPartitionOffset from, Headers? original, string eventId, byte[]? value, string error, int attempts, CancellationToken ct)
    {
        var headers = new Headers();
        foreach (var header in original ?? [])
            if (header.Key is not (HeaderNames.Id or HeaderNames.Error))
                headers.Add(header.Key, header.GetValueBytes());
        headers.Add(HeaderNames.Id, Encoding.UTF8.GetBytes(eventId));
        headers.Add(HeaderNames.Error, Encoding.UTF8.GetBytes(error));
        if (attempts > 0)
            headers.Add(AttemptsHeader, Encoding.UTF8.GetBytes(attempts.ToString(CultureInfo.InvariantCulture)));
        headers.Add(OriginalTopicHeader, Encoding.UTF8.GetBytes(from.Topic));
        headers.Add(OriginalPartitionHeader, Encoding.UTF8.GetBytes(from.Partition.Value.ToString(CultureInfo.InvariantCulture)));
        headers.Add(OriginalOffsetHeader, Encoding.UTF8.GetBytes(from.Offset.Value.ToString(CultureInfo.InvariantCulture)));
        headers.Add(ConsumerGroupHeader, Encoding.UTF8.GetBytes(_group));
        await _producer.ProduceAsync(_topic, new Message<byte[], byte[]> { Key = Encoding.UTF8.GetBytes(eventId), Value = value!, Headers = headers }, ct);
    }

    public void Dispose()
    {
        _producer.Flush(TimeSpan.FromSeconds(5));
        _producer.Dispose();
    }
}
