using System.Globalization;
using Cdc.Contracts;

namespace Cdc.Consumer;

/// <summary>An option of <see cref="OutboxConsumerService"/> that cannot work; the message names it.</summary>
public sealed class OutboxConsumerConfigurationException(string option, string problem)
    : Exception($"OutboxConsumerOptions.{option}: {problem}")
{
    public string Option { get; } = option;
}

/// <summary>Options of <see cref="OutboxConsumerService"/>, validated when the service is created.</summary>
public sealed class OutboxConsumerOptions
{
    public string BootstrapServers { get; set; } = "";

    /// <summary>The Kafka consumer group: instances with the same group share the topics' partitions.</summary>
    public string GroupId { get; set; } = "";

    public List<string> Topics { get; set; } = [];

    /// <summary>The inbox's <c>consumer</c> value; defaults to <see cref="GroupId"/>.</summary>
    public string? ConsumerName { get; set; }

    /// <summary>The inbox table (see <see cref="Inbox.CreateTableSql"/>), in the database the handler writes to.</summary>
    public string InboxTable { get; set; } = Inbox.DefaultTable;

    /// <summary>Where events go whose handler failed <see cref="MaxAttempts"/> times, or that cannot be read; required.</summary>
    public string DeadLetterTopic { get; set; } = "";

    /// <summary>Handler attempts per event before it is dead-lettered.</summary>
    public int MaxAttempts { get; set; } = 5;

    /// <summary>Wait after the first failure; it doubles per attempt up to <see cref="MaxBackoff"/>.</summary>
    public TimeSpan InitialBackoff { get; set; } = TimeSpan.FromMilliseconds(200);

    public TimeSpan MaxBackoff { get; set; } = TimeSpan.FromSeconds(30);

    /// <summary>How often offsets of processed events are committed to Kafka (also on rebalance and stop).</summary>
    public TimeSpan CommitInterval { get; set; } = TimeSpan.FromSeconds(1);

    /// <summary>How long inbox entries are kept; longer than any redelivery can lag (the topics' retention).</summary>
    public TimeSpan InboxRetention { get; set; } = TimeSpan.FromDays(7);

    /// <summary>How often old inbox entries are deleted; <see cref="TimeSpan.Zero"/> turns the cleanup off.</summary>
    public TimeSpan InboxPurgeInterval { get; set; } = TimeSpan.FromHours(1);

    /// <summary>librdkafka consumer properties applied after the service's defaults (not <c>enable.auto.commit</c>).</summary>
    public Dictionary<string, string> Consumer { get; set; } = new(StringComparer.Ordinal);

    /// <summary>librdkafka properties of the dead-letter producer, applied after the service's defaults.</summary>
    public Dictionary<string, string> Producer { get; set; } = new(StringComparer.Ordinal);

    public string EffectiveConsumerName => string.IsNullOrWhiteSpace(ConsumerName) ? GroupId : ConsumerName;

    /// <summary>The longest the handler's retries of one event can take: the consumer must poll again before <c>max.poll.interval.ms</c>.</summary>
    public TimeSpan RetryBudget =>
        Enumerable.Range(1, Math.Max(0, MaxAttempts - 1)).Aggregate(TimeSpan.Zero, (sum, attempt) => sum + RetryBackoff.Delay(attempt, InitialBackoff, MaxBackoff));

    /// <summary>Throws <see cref="OutboxConsumerConfigurationException"/> naming the first option that cannot work.</summary>
    public void Validate()
    {
        Require(nameof(BootstrapServers), BootstrapServers);
        Require(nameof(GroupId), GroupId);
        if (Topics is null || Topics.Count == 0)
            throw new OutboxConsumerConfigurationException(nameof(Topics), "needs at least one topic");
        foreach (var topic in Topics)
            if (!TopicName.IsValid(topic))
                throw new OutboxConsumerConfigurationException(nameof(Topics), $"'{topic}' is not a valid Kafka topic name");
        Require(nameof(DeadLetterTopic), DeadLetterTopic);
        if (!TopicName.IsValid(DeadLetterTopic))
            throw new OutboxConsumerConfigurationException(nameof(DeadLetterTopic), $"'{DeadLetterTopic}' is not a valid Kafka topic name");
        if (Topics.Contains(DeadLetterTopic))
            throw new OutboxConsumerConfigurationException(nameof(DeadLetterTopic), "must not be one of the consumed topics (a failing event would come back forever)");
        if (!TableName.TryParse(InboxTable, out _, out var tableError))
            throw new OutboxConsumerConfigurationException(nameof(InboxTable), tableError);
        if (MaxAttempts < 1)
            throw new OutboxConsumerConfigurationException(nameof(MaxAttempts), "must be at least 1");
        Positive(nameof(InitialBackoff), InitialBackoff);
        Positive(nameof(MaxBackoff), MaxBackoff);
        if (MaxBackoff < InitialBackoff)
            throw new OutboxConsumerConfigurationException(nameof(MaxBackoff), $"{MaxBackoff} is less than InitialBackoff {InitialBackoff}");
        Positive(nameof(CommitInterval), CommitInterval);
        Positive(nameof(InboxRetention), InboxRetention);
        if (InboxPurgeInterval < TimeSpan.Zero)
            throw new OutboxConsumerConfigurationException(nameof(InboxPurgeInterval), "must not be negative (zero turns the cleanup off)");

        foreach (var key in new[] { "enable.auto.commit", "enable.auto.offset.store", "group.id", "bootstrap.servers" })
            if (Consumer.ContainsKey(key))
                throw new OutboxConsumerConfigurationException($"Consumer[{key}]",
                    "is set by the service (offsets are committed only after the database commit)");

        // Retries happen between polls: if they outlast max.poll.interval.ms the group evicts this consumer mid-event.
        var maxPollMs = 300_000;
        if (Consumer.TryGetValue("max.poll.interval.ms", out var value) && !int.TryParse(value, CultureInfo.InvariantCulture, out maxPollMs))
            throw new OutboxConsumerConfigurationException("Consumer[max.poll.interval.ms]", $"'{value}' is not a number of milliseconds");
        var maxPoll = TimeSpan.FromMilliseconds(maxPollMs);
        if (RetryBudget >= maxPoll * 0.8 || MaxBackoff >= maxPoll * 0.8)
            throw new OutboxConsumerConfigurationException(nameof(MaxAttempts),
                $"retrying one event can take {RetryBudget} (MaxAttempts, InitialBackoff, MaxBackoff), too close to max.poll.interval.ms ({maxPoll}); " +
                "lower them or raise Consumer[max.poll.interval.ms]");
    }

    static void Require(string option, string? value)
    {
        if (string.IsNullOrWhiteSpace(value))
            throw new OutboxConsumerConfigurationException(option, "is required");
    }

    static void Positive(string option, TimeSpan value)
    {
        if (value <= TimeSpan.Zero)
            throw new OutboxConsumerConfigurationException(option, "must be positive");
    }
}

/// <summary>Exponential backoff: <c>initial × 2^(failures−1)</c>, capped.</summary>
public static class RetryBackoff
{
    public static TimeSpan Delay(int failures, TimeSpan initial, TimeSpan max)
    {
        if (failures < 1)
            return TimeSpan.Zero;
        var ticks = initial.Ticks * Math.Pow(2, Math.Min(failures - 1, 30));
        return ticks >= max.Ticks ? max : TimeSpan.FromTicks((long)ticks);
    }
}
