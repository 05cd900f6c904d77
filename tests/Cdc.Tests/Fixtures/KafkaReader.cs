using Confluent.Kafka;

namespace Cdc.Tests.Fixtures;

/// <summary>Reads a topic back from the beginning of every partition up to its high watermark.</summary>
public static class KafkaReader
{
    public static List<ConsumeResult<byte[], byte[]>> ReadAll(string bootstrapServers, string topic, TimeSpan? timeout = null)
    {
        using var consumer = new ConsumerBuilder<byte[], byte[]>(new ConsumerConfig
        {
            BootstrapServers = bootstrapServers,
            GroupId = $"reader-{Guid.NewGuid():N}",
            EnableAutoCommit = false,
            EnablePartitionEof = true,
        }).Build();
        using var admin = new DependentAdminClientBuilder(consumer.Handle).Build();
        var partitions = admin.GetMetadata(topic, TimeSpan.FromSeconds(10)).Topics.Single().Partitions.Select(p => p.PartitionId).ToList();

        var ends = new Dictionary<int, long>();
        foreach (var p in partitions)
            ends[p] = consumer.QueryWatermarkOffsets(new TopicPartition(topic, p), TimeSpan.FromSeconds(10)).High.Value;
        var pending = ends.Where(e => e.Value > 0).Select(e => e.Key).ToHashSet();
        consumer.Assign(pending.Select(p => new TopicPartitionOffset(topic, p, Offset.Beginning)));

        var records = new List<ConsumeResult<byte[], byte[]>>();
        var deadline = DateTime.UtcNow + (timeout ?? TimeSpan.FromSeconds(60));
        while (pending.Count > 0)
        {
            if (DateTime.UtcNow > deadline)
                throw new TimeoutException($"Reading {topic}: partitions {string.Join(",", pending)} not read to their end");
            var result = consumer.Consume(TimeSpan.FromMilliseconds(200));
            if (result is null)
                continue;
            var partition = result.Partition.Value;
            if (!result.IsPartitionEOF)
                records.Add(result);
            if (result.IsPartitionEOF || result.Offset.Value + 1 >= ends[partition])
                pending.Remove(partition);
        }
        return records;
    }
}
