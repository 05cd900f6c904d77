using Confluent.Kafka;

namespace Cdc.Publishing;

/// <summary>What a Kafka error means for the record it was reported for.</summary>
public enum DeliveryOutcome
{
    /// <summary>Kafka has the record.</summary>
    Acknowledged,
    /// <summary>
    /// Refused with its batch, not necessarily for itself: the batch was too large, or another record of it was invalid.
    /// Sent again alone before it is judged.
    /// </summary>
    RetryAlone,
    /// <summary>Too large on its own: it goes to the dead-letter topic without its payload.</summary>
    TooLarge,
    /// <summary>This record can never succeed as it is (invalid): it goes to the dead-letter topic.</summary>
    Rejected,
    /// <summary>The topic does not exist: the topic's events wait until it does (or is created).</summary>
    UnknownTopic,
    /// <summary>Taken back from the producer by the publisher itself; sent again.</summary>
    Purged,
    /// <summary>The connection or cluster failed: rebuild the producer and resume from the slot.</summary>
    Retry,
    /// <summary>No retry can fix it (authorization, misconfiguration): stop the worker.</summary>
    Fatal,
}

/// <summary>
/// Decides the outcome of every error code a delivery report (or an immediate refusal by <c>Produce</c>) can carry.
/// Anything not listed is a connection or cluster problem and retried: nothing is ever dropped by default.
/// </summary>
public static class DeliveryErrors
{
    /// <param name="alone">Whether the record was the only one the producer had for its topic (its own batch).</param>
    public static DeliveryOutcome Classify(ErrorCode code, bool alone) => code switch
    {
        ErrorCode.NoError => DeliveryOutcome.Acknowledged,

        // The broker's limit applies to a whole batch; the producer's (message.max.bytes) to one record, at once.
        ErrorCode.MsgSizeTooLarge or ErrorCode.RecordListTooLarge => alone ? DeliveryOutcome.TooLarge : DeliveryOutcome.RetryAlone,
        // KIP-467: the record the broker names gets InvalidRecord, the rest of its batch this. A broker that names no
        // record refuses the whole batch with InvalidRecord: only a record refused alone is judged.
        ErrorCode.Local_InvalidDifferentRecord or ErrorCode.InvalidRecord or ErrorCode.InvalidMsg or ErrorCode.InvalidTimestamp
            or ErrorCode.UnsupportedForMessageFormat => alone ? DeliveryOutcome.Rejected : DeliveryOutcome.RetryAlone,
        ErrorCode.Local_BadMsg or ErrorCode.TopicException => DeliveryOutcome.Rejected,
        // A partition the record names (a :partition placement) that its topic, which exists, does not have: waiting for
        // the topic would never end, as the topic is there.
        ErrorCode.Local_UnknownPartition => DeliveryOutcome.Rejected,

        ErrorCode.UnknownTopicOrPart or ErrorCode.Local_UnknownTopic => DeliveryOutcome.UnknownTopic,
        ErrorCode.Local_PurgeQueue or ErrorCode.Local_PurgeInflight => DeliveryOutcome.Purged,

        ErrorCode.TopicAuthorizationFailed or ErrorCode.ClusterAuthorizationFailed
            or ErrorCode.TransactionalIdAuthorizationFailed or ErrorCode.SaslAuthenticationFailed
            or ErrorCode.Local_Authentication or ErrorCode.UnsupportedSaslMechanism
            or ErrorCode.Local_InvalidArg or ErrorCode.Local_Ssl or ErrorCode.InvalidRequiredAcks
            or ErrorCode.InvalidConfig or ErrorCode.Local_UnsupportedFeature => DeliveryOutcome.Fatal,

        // Timeouts, transport, brokers down, leader changes, not enough replicas, a fatal producer state
        // (Local_Fatal: the producer is rebuilt), and anything else.
        _ => DeliveryOutcome.Retry,
    };
}
