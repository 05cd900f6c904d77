using Confluent.Kafka;

namespace Cdc.Soak;

/// <summary>
/// The high watermarks of the event topics, asked of the cluster (not of the readers, which may lag): the offsets that
/// bound what was produced during a window.
/// </summary>
sealed class KafkaWatermarks(string bootstrapServers) : IDisposable
{
    const int Partitions = 3;

    readonly IConsumer<byte[], byte[]> _consumer = new ConsumerBuilder<byte[], byte[]>(new ConsumerConfig
    {
        BootstrapServers = bootstrapServers,
        GroupId = "soak-watermarks", // never joins: only watermark queries
        EnableAutoCommit = false,
        AllowAutoCreateTopics = false,
    }).SetLogHandler((_, _) => { }).SetErrorHandler((_, _) => { }).Build();

    /// <summary>Per topic index (<see cref="Aggregates.TypeName"/>), the high watermark of each of its partitions.</summary>
    public Task<Dictionary<int, long[]>> HighAsync(IEnumerable<int> typeIndexes) => Task.Run(() =>
        typeIndexes.ToDictionary(t => t, t => Enumerable.Range(0, Partitions)
            .Select(p => _consumer.QueryWatermarkOffsets(
                new TopicPartition(SoakRun.TopicOf(Aggregates.TypeName(t)), p), TimeSpan.FromSeconds(10)).High.Value)
            .ToArray()));

    public void Dispose()
    {
        _consumer.Close();
        _consumer.Dispose();
    }
}
