using Confluent.Kafka;

namespace Cdc.Publishing;

/// <summary>What a Kafka error means for the event it was reported for.</summary>
public enum DeliveryOutcome
{
    /// <summary>Kafka has the record.</summary>
    Acknowledged,
    /// <summary>This one record can never succeed (e.g. too large): it goes to the dead-letter topic.</summary>
    DeadLetter,
    /// <summary>The connection or cluster failed: rebuild the producer and resume from the slot.</summary>
    Retry,
    /// <summary>No retry can fix it (authorization, misconfiguration): stop the worker.</summary>
    Fatal,
}

public static class DeliveryErrors
{
    public static DeliveryOutcome Classify(Error error) => error.Code switch
    {
        ErrorCode.NoError => DeliveryOutcome.Acknowledged,
        ErrorCode.MsgSizeTooLarge or ErrorCode.RecordListTooLarge
            or ErrorCode.InvalidRecord or ErrorCode.InvalidMsg or ErrorCode.TopicException
            or ErrorCode.InvalidRequiredAcks => DeliveryOutcome.DeadLetter,
        ErrorCode.TopicAuthorizationFailed or ErrorCode.ClusterAuthorizationFailed
            or ErrorCode.TransactionalIdAuthorizationFailed or ErrorCode.SaslAuthenticationFailed
            or ErrorCode.Local_Authentication or ErrorCode.UnsupportedSaslMechanism
            or ErrorCode.Local_InvalidArg or ErrorCode.Local_Ssl => DeliveryOutcome.Fatal,
        _ => DeliveryOutcome.Retry,
    };

    /// <summary>Whether the dead letter should leave the payload out (the record was too large).</summary>
    public static bool IsTooLarge(Error error) =>
        error.Code is ErrorCode.MsgSizeTooLarge or ErrorCode.RecordListTooLarge;
}
