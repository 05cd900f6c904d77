namespace Cdc.Mapping;

/// <summary>Routes an event to its topic: the configured template with <c>{aggregate_type}</c> replaced.</summary>
public sealed class TopicRouter
{
    public const string Placeholder = "{aggregate_type}";

    readonly string _prefix;
    readonly string _suffix;
    readonly string? _fixedTopic;
    // Topics are few (one per aggregate type) and the hot path asks for them per event: cache the strings.
    readonly Dictionary<string, string> _cache = new(StringComparer.Ordinal);

    public TopicRouter(string template)
    {
        var at = template.IndexOf(Placeholder, StringComparison.Ordinal);
        if (at < 0)
        {
            _fixedTopic = template;
            _prefix = _suffix = "";
        }
        else
        {
            _prefix = template[..at];
            _suffix = template[(at + Placeholder.Length)..];
        }
    }

    /// <summary>The topic for an aggregate type, or null with the reason when it cannot be routed.</summary>
    public string? Route(string? aggregateType, out string? error)
    {
        error = null;
        if (aggregateType is null)
        {
            error = "aggregate_type is NULL";
            return null;
        }
        if (_fixedTopic is not null)
            return _fixedTopic;
        if (_cache.TryGetValue(aggregateType, out var topic))
            return topic;

        topic = _prefix + aggregateType + _suffix;
        if (!TopicName.IsValid(topic))
        {
            error = $"aggregate_type '{Truncate(aggregateType)}' does not make a valid Kafka topic name";
            return null;
        }
        if (_cache.Count < 10_000)
            _cache[aggregateType] = topic;
        return topic;
    }

    static string Truncate(string value) => value.Length <= 64 ? value : value[..64] + "…";
}
