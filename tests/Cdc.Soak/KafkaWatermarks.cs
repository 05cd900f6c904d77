using Confluent.Kafka;

namespace Cdc.Soak;

/// <summary>
/// The high watermarks of the event topics, asked of the cluster (not of the readers, which may lag): the offsets that
/// bound what was produced during a window. A new client per question: one kept idle for minutes timed out on every
/// query after the brokers had been down (seen in a run), while new ones answer.
/// </summary>
sealed class KafkaWatermarks(string bootstrapServers)
{
    const int Partitions = 3;
    const int Attempts = 3;

    /// <summary>Per topic index (<see cref="Aggregates.TypeName"/>), the high watermark of each of its partitions; null when the cluster did not answer.</summary>
    public Task<Dictionary<int, long[]>?> HighAsync(IEnumerable<int> typeIndexes, RunLog log) => Task.Run(() =>
    {
        for (var attempt = 1; ; attempt++)
        {
            using var consumer = new ConsumerBuilder<byte[], byte[]>(new ConsumerConfig
            {
                BootstrapServers = bootstrapServers,
                GroupId = $"soak-watermarks-{Guid.NewGuid():N}", // never joins: only watermark queries
                EnableAutoCommit = false,
                AllowAutoCreateTopics = false,
            }).SetLogHandler((_, _) => { }).SetErrorHandler((_, _) => { }).Build();
            try
            {
                return typeIndexes.ToDictionary(t => t, t => Enumerable.Range(0, Partitions)
                    .Select(p => consumer.QueryWatermarkOffsets(
                        new TopicPartition(SoakRun.TopicOf(Aggregates.TypeName(t)), p), TimeSpan.FromSeconds(10)).High.Value)
                    .ToArray());
            }
            catch (KafkaException e)
            {
                log.Info($"watermark query failed (attempt {attempt} of {Attempts}): {e.Error.Reason}");
                if (attempt == Attempts)
                    return null;
            }
        }
    });
}
