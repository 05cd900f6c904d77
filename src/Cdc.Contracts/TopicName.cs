namespace Cdc.Contracts;

/// <summary>Kafka's rule for topic names.</summary>
public static class TopicName
{
    public const int MaxLength = 249;

    /// <summary>1 to 249 of <c>[a-zA-Z0-9._-]</c>, and not <c>.</c> or <c>..</c>.</summary>
    public static bool IsValid(string? topic)
    {
        if (string.IsNullOrEmpty(topic) || topic.Length > MaxLength || topic is "." or "..")
            return false;
        foreach (var ch in topic)
            if (!(char.IsAsciiLetterOrDigit(ch) || ch is '.' or '_' or '-'))
                return false;
        return true;
    }
}
