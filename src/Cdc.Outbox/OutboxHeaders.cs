using System.Diagnostics;
using System.Text;
using System.Text.Json;
using Cdc.Contracts;

namespace Cdc.Outbox;

/// <summary>The headers an event is written with: the message's own, the current trace context, and the content type where the table needs it.</summary>
static class OutboxHeaders
{
    /// <summary>
    /// The message's headers plus, unless it set them, the W3C trace context of <see cref="Activity.Current"/> (so the
    /// consumer's span continues the writer's trace) and, when asked, the payload's <c>content-type</c>.
    /// </summary>
    public static Dictionary<string, string> For(OutboxMessage message, bool withContentType)
    {
        foreach (var name in message.Headers.Keys)
            if (HeaderNames.IsReserved(name))
                // The connector sets these record headers itself and appends the row's after them: a second "id"
                // header would be the one most clients read, and consumers deduplicate on it.
                throw new ArgumentException(
                    $"Event {message.Id} has a header named '{name}', which the connector sets itself from the event; choose another name.",
                    nameof(message));
        var headers = new Dictionary<string, string>(message.Headers, StringComparer.Ordinal);
        // traceparent and tracestate belong together: an explicit traceparent is never paired with another trace's state.
        if (Activity.Current is { IdFormat: ActivityIdFormat.W3C, Id: { } id } activity && !Has(headers, HeaderNames.TraceParent))
        {
            headers[HeaderNames.TraceParent] = id;
            if (!string.IsNullOrEmpty(activity.TraceStateString) && !Has(headers, HeaderNames.TraceState))
                headers[HeaderNames.TraceState] = activity.TraceStateString;
        }
        if (withContentType && !Has(headers, HeaderNames.ContentType))
            headers[HeaderNames.ContentType] = message.Payload.ContentType;
        return headers;
    }

    /// <summary>The headers as the JSON object the <c>headers</c> column holds, or null when there are none.</summary>
    public static string? ToJson(IReadOnlyDictionary<string, string> headers)
    {
        if (headers.Count == 0)
            return null;
        using var buffer = new MemoryStream();
        using (var json = new Utf8JsonWriter(buffer))
        {
            json.WriteStartObject();
            foreach (var (name, value) in headers)
                json.WriteString(name, value);
            json.WriteEndObject();
        }
        return Encoding.UTF8.GetString(buffer.GetBuffer(), 0, (int)buffer.Length);
    }

    // Header names are matched without case for the W3C and HTTP names, as their specifications say.
    static bool Has(Dictionary<string, string> headers, string name) =>
        headers.Keys.Any(k => string.Equals(k, name, StringComparison.OrdinalIgnoreCase));
}
