using System.Text.Json;

namespace Cdc.Table;

/// <summary>
/// A re-publish signal, the JSON content of a transactional <c>pg_logical_emit_message(true, '&lt;SignalPrefix&gt;', …)</c>:
/// <c>{"slot":"…","action":"republish","from":"…","to":"…"}</c> (rows by <c>created_at</c> in [from, to)) or
/// <c>{"slot":"…","action":"republish","ids":["…"]}</c>.
/// </summary>
public sealed record RepublishSignal(string Slot, DateTime? From, DateTime? To, IReadOnlyList<string>? Ids)
{
    /// <summary>Parses a signal; null with the reason when it is malformed.</summary>
    public static RepublishSignal? Parse(ReadOnlySpan<byte> json, out string? error)
    {
        error = null;
        try
        {
            using var document = JsonDocument.Parse(json.ToArray());
            var root = document.RootElement;
            if (root.ValueKind != JsonValueKind.Object)
                return Fail("is not a JSON object", out error);
            if (!root.TryGetProperty("slot", out var slot) || slot.ValueKind != JsonValueKind.String || slot.GetString() is not { Length: > 0 } slotName)
                return Fail("has no \"slot\"", out error);
            if (!root.TryGetProperty("action", out var action) || action.ValueKind != JsonValueKind.String || action.GetString() != "republish")
                return Fail("has no \"action\":\"republish\"", out error);
            if (root.TryGetProperty("ids", out var idsElement))
            {
                if (idsElement.ValueKind != JsonValueKind.Array || idsElement.GetArrayLength() == 0 ||
                    idsElement.EnumerateArray().Any(i => i.ValueKind != JsonValueKind.String))
                    return Fail("\"ids\" is not a non-empty array of strings", out error);
                return new RepublishSignal(slotName, null, null, [.. idsElement.EnumerateArray().Select(i => Canonical(i.GetString()!))]);
            }
            var from = Time(root, "from");
            var to = Time(root, "to");
            if (from is null || to is null)
                return Fail("needs \"ids\", or \"from\" and \"to\" timestamps with a time zone", out error);
            if (to <= from)
                return Fail("\"to\" is not after \"from\"", out error);
            return new RepublishSignal(slotName, from, to, null);
        }
        catch (JsonException e)
        {
            return Fail($"is not valid JSON ({e.Message})", out error);
        }
    }

    /// <summary>
    /// A uuid in PostgreSQL's text form (lower case, hyphens), which the table reader compares with; uuid input is
    /// case-insensitive (RFC 4122), so "A1B2…" names the same row. Ids that are not uuids (a text id column) stay as written.
    /// </summary>
    static string Canonical(string id) => Guid.TryParse(id, out var uuid) ? uuid.ToString("D") : id;

    static DateTime? Time(JsonElement root, string name) =>
        root.TryGetProperty(name, out var value) && value.ValueKind == JsonValueKind.String &&
        DateTimeOffset.TryParse(value.GetString(), System.Globalization.CultureInfo.InvariantCulture,
            System.Globalization.DateTimeStyles.None, out var time) && HasZone(value.GetString()!)
            ? time.UtcDateTime
            : null;

    /// <summary>A timestamptz needs its zone: without one the range would depend on this process's clock settings.</summary>
    static bool HasZone(string text) => text.EndsWith('Z') || text.EndsWith('z') || System.Text.RegularExpressions.Regex.IsMatch(text, @"[+-]\d\d(:?\d\d)?$");

    static RepublishSignal? Fail(string why, out string? error)
    {
        error = why;
        return null;
    }

    public override string ToString() =>
        Ids is { } ids ? $"{ids.Count} ids" : $"created_at from {From:O} to {To:O}";
}
