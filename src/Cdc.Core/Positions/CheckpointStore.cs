using System.Text;
using Cdc.Configuration;
using Cdc.Replication;
using Confluent.Kafka;
using Confluent.Kafka.Admin;

namespace Cdc.Positions;

/// <summary>Kafka did not take a checkpoint record; the message names the topic.</summary>
public sealed class CheckpointWriteException(string message, Exception inner) : Exception(message, inner);

/// <summary>Where the connector keeps its <see cref="SlotCheckpoint"/>s.</summary>
public interface ICheckpointStore
{
    /// <summary>Every checkpoint kept for this database and slot, whatever server wrote it (newest last).</summary>
    Task<IReadOnlyList<SlotCheckpoint>> ReadAsync(string database, string slot, CancellationToken ct);

    /// <summary>Writes the checkpoint and waits until Kafka has it.</summary>
    Task WriteAsync(SlotCheckpoint checkpoint, CancellationToken ct);
}

/// <summary>
/// Checkpoints in a compacted Kafka topic of one partition (created so when missing, where the cluster allows; else the
/// cluster's auto-creation makes it). Read with <c>read_committed</c> from the beginning to the end, the last record
/// per key winning; written by the session's own producer, so that with Kafka transactions the checkpoint can go in the
/// same transaction as the events.
/// </summary>
public sealed class KafkaCheckpointStore(KafkaOptions options, Func<string, byte[], byte[], Task> produce, IAdminClient admin) : ICheckpointStore
{
    static readonly TimeSpan Timeout = TimeSpan.FromSeconds(30);
    bool _topicEnsured;

    public Task<IReadOnlyList<SlotCheckpoint>> ReadAsync(string database, string slot, CancellationToken ct) => Task.Run(() =>
    {
        var config = new ConsumerConfig
        {
            BootstrapServers = options.BootstrapServers,
            GroupId = "cdc-checkpoint-reader", // never joins: partitions are assigned, no offsets committed
            EnableAutoCommit = false,
            IsolationLevel = IsolationLevel.ReadCommitted,
            EnablePartitionEof = true,
            AllowAutoCreateTopics = false,
        };
        // The producer's settings carry the cluster's security (SASL, TLS); producer-only ones are ignored by a consumer.
        foreach (var (key, value) in options.Producer)
            if (!ProducerOnly(key))
                config.Set(key, value);
        using var consumer = new ConsumerBuilder<byte[], byte[]>(config).SetLogHandler((_, _) => { }).Build();
        using var admin = new DependentAdminClientBuilder(consumer.Handle).Build();
        var topic = admin.GetMetadata(options.CheckpointTopic, Timeout).Topics.FirstOrDefault(t => t.Topic == options.CheckpointTopic);
        if (topic is null || topic.Error.Code is ErrorCode.UnknownTopicOrPart or ErrorCode.Local_UnknownTopic)
            return (IReadOnlyList<SlotCheckpoint>)[];
        if (topic.Error.Code != ErrorCode.NoError)
            throw new KafkaException(topic.Error);

        var ends = new Dictionary<int, long>();
        foreach (var partition in topic.Partitions)
        {
            var high = consumer.QueryWatermarkOffsets(new TopicPartition(options.CheckpointTopic, partition.PartitionId), Timeout).High.Value;
            if (high > 0)
                ends[partition.PartitionId] = high;
        }
        var latest = new Dictionary<string, SlotCheckpoint?>(StringComparer.Ordinal);
        var order = new List<string>();
        var unreadable = new Dictionary<string, string>(StringComparer.Ordinal);
        consumer.Assign(ends.Keys.Select(p => new TopicPartitionOffset(options.CheckpointTopic, p, Offset.Beginning)));
        var deadline = DateTime.UtcNow + Timeout;
        var suffix = $"/{database}/{slot}";
        while (ends.Count > 0)
        {
            ct.ThrowIfCancellationRequested();
            if (DateTime.UtcNow > deadline)
                throw new KafkaException(new Error(ErrorCode.Local_TimedOut, $"reading {options.CheckpointTopic} did not reach its end"));
            var result = consumer.Consume(TimeSpan.FromMilliseconds(200));
            if (result is null)
                continue;
            if (!result.IsPartitionEOF && result.Message.Key is { } key && Encoding.UTF8.GetString(key) is var name && name.EndsWith(suffix, StringComparison.Ordinal))
            {
                string? error = null;
                latest[name] = result.Message.Value is { Length: > 0 } value ? SlotCheckpoint.FromJson(value, out error) : null;
                if (error is null)
                    unreadable.Remove(name);
                else
                    unreadable[name] = $"offset {result.TopicPartitionOffset}: {error}";
                order.Remove(name);
                order.Add(name);
            }
            if (result.IsPartitionEOF || result.Offset.Value + 1 >= ends.GetValueOrDefault(result.Partition.Value))
                ends.Remove(result.Partition.Value);
        }
        // The last record per key is what the connector knows; an unreadable one cannot be taken for "nothing" (a missing
        // slot would be a silent first start). A tombstone (no value) is the way to forget a slot.
        if (unreadable.FirstOrDefault() is { Key: not null } bad)
            throw new CdcStartupException(
                $"The last checkpoint of {bad.Key} in {options.CheckpointTopic} cannot be read ({bad.Value}), so what the connector confirmed in " +
                $"slot {slot} is unknown. Write a valid checkpoint for that key, or a tombstone (the key with no value) to forget the slot.");
        return (IReadOnlyList<SlotCheckpoint>)[.. order.Select(k => latest[k]).OfType<SlotCheckpoint>()];
    }, ct);

    public async Task WriteAsync(SlotCheckpoint checkpoint, CancellationToken ct)
    {
        if (!_topicEnsured)
        {
            await EnsureTopicAsync(ct);
            _topicEnsured = true;
        }
        try
        {
            await produce(options.CheckpointTopic, Encoding.UTF8.GetBytes(checkpoint.Key), checkpoint.ToJson()).WaitAsync(ct);
        }
        catch (KafkaException e)
        {
            // Named for what it is: Kafka answered, the checkpoint topic did not take it (missing and not creatable, refused).
            throw new CheckpointWriteException($"Could not write the checkpoint of slot {checkpoint.Slot} to {options.CheckpointTopic}: " +
                                               $"{e.Error.Code} ({e.Error.Reason})", e);
        }
    }

    /// <summary>Creates the topic compacted with one partition; where the cluster does not allow it, producing creates it.</summary>
    async Task EnsureTopicAsync(CancellationToken ct)
    {
        try
        {
            await admin.CreateTopicsAsync(
                [
                    new TopicSpecification
                    {
                        Name = options.CheckpointTopic,
                        NumPartitions = 1,
                        ReplicationFactor = options.Topics.ReplicationFactor ?? -1,
                        Configs = new Dictionary<string, string> { ["cleanup.policy"] = "compact" },
                    },
                ],
                new CreateTopicsOptions { RequestTimeout = TimeSpan.FromSeconds(5), OperationTimeout = TimeSpan.FromSeconds(5) }).WaitAsync(ct);
        }
        catch (KafkaException)
        {
            // Exists already, or the cluster does not let us create it: producing to it will do (auto-creation).
        }
    }

    static bool ProducerOnly(string key) =>
        key.StartsWith("queue.", StringComparison.Ordinal) || key.StartsWith("linger", StringComparison.Ordinal) ||
        key.StartsWith("batch.", StringComparison.Ordinal) || key.StartsWith("message.timeout", StringComparison.Ordinal) ||
        key.StartsWith("transaction", StringComparison.Ordinal) || key.StartsWith("enable.idempotence", StringComparison.Ordinal) ||
        key.StartsWith("compression", StringComparison.Ordinal) || key.StartsWith("acks", StringComparison.Ordinal) ||
        key.StartsWith("retries", StringComparison.Ordinal) || key.StartsWith("max.in.flight", StringComparison.Ordinal) ||
        key.StartsWith("partitioner", StringComparison.Ordinal) || key.StartsWith("delivery.", StringComparison.Ordinal) ||
        key.StartsWith("request.required.acks", StringComparison.Ordinal) || key.StartsWith("sticky.", StringComparison.Ordinal) ||
        key.StartsWith("allow.auto.create.topics", StringComparison.Ordinal);
}
