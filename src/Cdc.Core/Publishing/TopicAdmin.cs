using Cdc.Configuration;
using Confluent.Kafka;
using Confluent.Kafka.Admin;

namespace Cdc.Publishing;

/// <summary>What the cluster said about a topic.</summary>
public enum TopicExistence
{
    Exists,
    Missing,
    /// <summary>The cluster could not be asked (unreachable, timed out).</summary>
    Unknown,
}

/// <summary>Finds out whether topics exist and creates them: what the publisher needs before it sends to a new topic.</summary>
public interface ITopicAdmin
{
    Task<TopicExistence> ExistsAsync(string topic, CancellationToken ct);

    /// <summary>Creates the topic with the configured partitions, replication and settings; null when created (or it exists), else why not.</summary>
    Task<string?> CreateAsync(string topic, CancellationToken ct);

    /// <summary>Whether a broker answers a metadata request: how an idle producer learns that Kafka is back.</summary>
    Task<bool> AnswersAsync(CancellationToken ct);
}

/// <summary>
/// <see cref="ITopicAdmin"/> over the producer's admin client (<see cref="KafkaRecordProducer.Admin"/>). Asking for a topic's metadata
/// lets a cluster that auto-creates topics create it, as producing to it would; where it does not, the topic is created
/// with <c>Cdc:Kafka:Topics:*</c> (cluster defaults for what is unset), as Kafka Connect's topic creation does.
/// </summary>
public sealed class KafkaTopicAdmin(IAdminClient admin, TopicOptions options) : ITopicAdmin
{
    static readonly TimeSpan Timeout = TimeSpan.FromSeconds(10);

    public Task<TopicExistence> ExistsAsync(string topic, CancellationToken ct) => Task.Run(() =>
    {
        try
        {
            var metadata = admin.GetMetadata(topic, Timeout).Topics.FirstOrDefault(t => t.Topic == topic);
            return metadata?.Error.Code switch
            {
                null or ErrorCode.UnknownTopicOrPart or ErrorCode.Local_UnknownTopic => TopicExistence.Missing,
                ErrorCode.NoError or ErrorCode.LeaderNotAvailable => TopicExistence.Exists,
                _ => TopicExistence.Unknown,
            };
        }
        catch (KafkaException)
        {
            return TopicExistence.Unknown;
        }
    }, ct);

    public Task<bool> AnswersAsync(CancellationToken ct) => Task.Run(() => KafkaProbe.Answers(admin, TimeSpan.FromSeconds(5)), ct);

    public async Task<string?> CreateAsync(string topic, CancellationToken ct)
    {
        try
        {
            await admin.CreateTopicsAsync([Specification(topic, options)],
                new CreateTopicsOptions { RequestTimeout = Timeout, OperationTimeout = Timeout }).WaitAsync(ct);
            return null;
        }
        catch (CreateTopicsException e) when (e.Results.All(r => r.Error.Code is ErrorCode.NoError or ErrorCode.TopicAlreadyExists))
        {
            return null;
        }
        catch (CreateTopicsException e)
        {
            var error = e.Results.First(r => r.Error.Code != ErrorCode.NoError).Error;
            return $"{error.Code} ({error.Reason})";
        }
        catch (KafkaException e)
        {
            return $"{e.Error.Code} ({e.Error.Reason})";
        }
    }

    /// <summary>The topic as <c>Cdc:Kafka:Topics:*</c> describes it; -1 asks for the cluster's default (Kafka 2.4+).</summary>
    public static TopicSpecification Specification(string topic, TopicOptions options) => new()
    {
        Name = topic,
        NumPartitions = options.Partitions ?? -1,
        ReplicationFactor = options.ReplicationFactor ?? -1,
        Configs = options.Config.Count == 0 ? null : new Dictionary<string, string>(options.Config),
    };
}
