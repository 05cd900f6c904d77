namespace Cdc.Contracts;

/// <summary>Names of the Kafka record headers of the contract, and of the entries of a row's <c>headers</c> object that mean something.</summary>
public static class HeaderNames
{
    /// <summary>The event id (the row's <c>id</c>), set by the connector on every record and dead letter; consumers deduplicate on it.</summary>
    public const string Id = "id";

    /// <summary>The row's <c>event_type</c>, set by the connector on every record.</summary>
    public const string EventType = "event_type";

    /// <summary>Why a dead letter could not be published or handled.</summary>
    public const string Error = "error";

    /// <summary>The payload's media type, in a row's headers when the payload column is bytea.</summary>
    public const string ContentType = "content-type";

    /// <summary>W3C trace context: the writer's span, then the connector's.</summary>
    public const string TraceParent = "traceparent";

    /// <summary>W3C trace state, travelling with <see cref="TraceParent"/>.</summary>
    public const string TraceState = "tracestate";

    /// <summary>Whether a row header of this name is reserved: the connector sets it on the record itself.</summary>
    public static bool IsReserved(string name) => name is Id or EventType;
}
