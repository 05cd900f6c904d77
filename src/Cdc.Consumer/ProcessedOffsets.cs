using Confluent.Kafka;

namespace Cdc.Consumer;

/// <summary>
/// Offsets of records whose processing has committed in the database but that are not yet committed to Kafka.
/// Only what is here is ever committed, so Kafka's committed offset never passes an event the database has not got.
/// Used from the consume loop's thread only (rebalance callbacks run inside Consume, on that thread).
/// </summary>
sealed class ProcessedOffsets
{
    readonly Dictionary<TopicPartition, Offset> _next = [];

    public bool IsEmpty => _next.Count == 0;

    /// <summary>The record is done (processed, skipped as a duplicate or dead-lettered): resume after it.</summary>
    public void MarkDone(TopicPartitionOffset record) => _next[record.TopicPartition] = record.Offset + 1;

    /// <summary>The offsets to commit for <paramref name="partitions"/> (all when null); they are forgotten once taken.</summary>
    public List<TopicPartitionOffset> Take(IEnumerable<TopicPartition>? partitions = null)
    {
        var taken = (partitions ?? _next.Keys.ToList())
            .Where(_next.ContainsKey)
            .Select(p => new TopicPartitionOffset(p, _next[p]))
            .ToList();
        foreach (var offset in taken)
            _next.Remove(offset.TopicPartition);
        return taken;
    }

    /// <summary>Partitions lost without a chance to commit: their offsets must not be committed later over the new owner's.</summary>
    public void Forget(IEnumerable<TopicPartition> partitions)
    {
        foreach (var partition in partitions)
            _next.Remove(partition);
    }
}
