namespace Cdc.Publishing;

/// <summary>Whether events may go to a topic now.</summary>
public enum TopicStatus
{
    /// <summary>Not asked yet in this session: its events wait for the answer.</summary>
    Unchecked,
    /// <summary>The topic exists: its events are produced.</summary>
    Open,
    /// <summary>The topic does not exist and could not be created: its events wait, the rest of the stream goes on.</summary>
    Blocked,
}

/// <summary>
/// One topic as the publisher sees it: whether it may be sent to, and the events that wait for it in read order.
/// Guarded by the publisher's lock.
/// </summary>
public sealed class TopicGate(string topic, TopicStatus status)
{
    public string Topic { get; } = topic;
    public TopicStatus Status { get; set; } = status;

    /// <summary>Events for this topic that wait, oldest first. While any wait, later ones wait behind them.</summary>
    public Queue<PendingEvent> Waiting { get; } = new();

    /// <summary>Whether an event for this topic may be produced now (the topic is open and nothing older waits for it).</summary>
    public bool Passes => Status == TopicStatus.Open && Waiting.Count == 0;

    /// <summary>Why the topic is blocked, while it is; for the log and /readyz.</summary>
    public string? BlockedBecause { get; set; }

    /// <summary>Completes when the topic opens (exactly-once delivery waits for it instead of holding events back).</summary>
    public TaskCompletionSource? Opened { get; set; }

    /// <summary>The Schema Registry framing of the topic's values (byte 0, schema id, message index), or null: not framed.</summary>
    public byte[]? ValuePrefix { get; set; }

    /// <summary>Blocked because its schema id is not known (the topic itself exists).</summary>
    public bool BlockedBySchema { get; set; }

    /// <summary>When to ask the cluster about a blocked topic again.</summary>
    public DateTime NextCheck { get; set; }
    public TimeSpan CheckBackoff { get; set; }
}
