using System.Diagnostics;
using System.Text;
using Cdc.Mapping;

namespace Cdc.Telemetry;

/// <summary>
/// Continues the writer's trace through Kafka: when a row's headers carry <c>traceparent</c> (and <c>tracestate</c>),
/// the publish is a PRODUCER span <c>send &lt;topic&gt;</c> in that trace, and the record's <c>traceparent</c> header
/// is replaced by the new span's context so consumers continue the same trace. Without one, no span is started.
/// </summary>
public static class OutboxTracing
{
    public const string SourceName = "Cdc";

    static readonly ActivitySource Source = new(SourceName);

    /// <summary>Starts the send span for the record, or returns null when there is no trace to continue or no listener.</summary>
    public static Activity? StartSend(OutboxRecord record)
    {
        if (!Source.HasListeners() || !record.Headers.TryGetLastBytes(HeaderNames.TraceParent, out var traceParent))
            return null;
        var traceState = record.Headers.TryGetLastBytes(HeaderNames.TraceState, out var state) ? Encoding.UTF8.GetString(state) : null;
        if (!ActivityContext.TryParse(Encoding.UTF8.GetString(traceParent), traceState, isRemote: true, out var parent))
            return null;

        var previous = Activity.Current;
        var activity = Source.StartActivity($"send {record.Topic}", ActivityKind.Producer, parent, tags:
        [
            new("messaging.system", "kafka"),
            new("messaging.operation.name", "send"),
            new("messaging.operation.type", "send"),
            new("messaging.destination.name", record.Topic),
            new("messaging.message.id", record.EventId),
            new("messaging.kafka.message.key", Encoding.UTF8.GetString(record.Key)),
        ]);
        // The span ends on Kafka's delivery thread; it must not become the reading loop's current activity.
        Activity.Current = previous;
        if (activity is null)
            return null;

        record.Headers.Remove(HeaderNames.TraceParent);
        record.Headers.Add(HeaderNames.TraceParent, Encoding.UTF8.GetBytes(activity.Id!));
        return activity;
    }

    /// <summary>Ends the span with the delivery's outcome.</summary>
    public static void Stop(Activity? activity, string? error)
    {
        if (activity is null)
            return;
        if (error is not null)
            activity.SetStatus(ActivityStatusCode.Error, error);
        activity.Stop();
    }
}
