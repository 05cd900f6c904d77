using System.Buffers.Binary;
using System.Globalization;
using System.Text;
using Cdc.Configuration;
using Cdc.Mapping;

namespace Cdc.Replication;

/// <summary>
/// The column types a placed column (<c>Cdc:Kafka:AdditionalPlacement</c>) may have, and how their binary values become
/// header text: text types as they are, uuid in its canonical form, integers in decimal, booleans as true/false,
/// timestamptz in ISO 8601 UTC, json and jsonb as their JSON text. Only integers can be placed as the partition.
/// </summary>
static class PlacedColumns
{
    // Built-in type OIDs (pg_type.h), by the name format_type gives them.
    static readonly Dictionary<string, uint> OidByTypeName = new(StringComparer.Ordinal)
    {
        ["text"] = 25, ["character varying"] = 1043, ["character"] = 1042, ["name"] = 19,
        ["uuid"] = OutboxRelationLayout.UuidOid,
        ["smallint"] = Int2Oid, ["integer"] = Int4Oid, ["bigint"] = Int8Oid,
        ["boolean"] = 16,
        ["timestamp with time zone"] = OutboxRelationLayout.TimestampTzOid,
        ["jsonb"] = OutboxRelationLayout.JsonbOid, ["json"] = OutboxRelationLayout.JsonOid,
    };

    const uint Int2Oid = 21, Int4Oid = 23, Int8Oid = 20;

    static readonly HashSet<uint> Oids = [.. OidByTypeName.Values];

    public static bool Decodes(uint typeOid) => Oids.Contains(typeOid);

    public static bool IsInteger(uint typeOid) => typeOid is Int2Oid or Int4Oid or Int8Oid;

    /// <summary>
    /// At start: every placed column exists in the table (<paramref name="columns"/>: name → format_type) with a type
    /// that can be placed there; otherwise a configuration error naming the key.
    /// </summary>
    public static void Check(TableName table, IReadOnlyDictionary<string, string> columns, IReadOnlyList<Placement> placements)
    {
        foreach (var placement in placements)
        {
            if (!columns.TryGetValue(placement.Column, out var type))
                throw new CdcConfigurationException(AdditionalPlacement.Key, $"table {table} has no column '{placement.Column}'");
            if (!OidByTypeName.TryGetValue(type, out var oid))
                throw new CdcConfigurationException(AdditionalPlacement.Key,
                    $"column {table}.{placement.Column} is {type}; a placed column must be one of {string.Join(", ", OidByTypeName.Keys)}");
            if (placement.Target == PlacementTarget.Partition && !IsInteger(oid))
                throw new CdcConfigurationException(AdditionalPlacement.Key,
                    $"column {table}.{placement.Column} is {type}; the partition column must be smallint, integer or bigint");
        }
    }

    /// <summary>A binary value of a placed column. Throws <see cref="InvalidDataException"/> (or a decoder's exception) when it cannot be read.</summary>
    public static PlacedValue Decode(uint typeOid, ReadOnlySpan<byte> raw) => typeOid switch
    {
        OutboxRelationLayout.UuidOid => new PlacedValue(new Guid(OutboxRowReader.Exactly(raw, 16), bigEndian: true).ToString("D")),
        Int2Oid => Integer(BinaryPrimitives.ReadInt16BigEndian(OutboxRowReader.Exactly(raw, 2))),
        Int4Oid => Integer(BinaryPrimitives.ReadInt32BigEndian(OutboxRowReader.Exactly(raw, 4))),
        Int8Oid => Integer(BinaryPrimitives.ReadInt64BigEndian(OutboxRowReader.Exactly(raw, 8))),
        16 => new PlacedValue(OutboxRowReader.Exactly(raw, 1)[0] != 0 ? "true" : "false"),
        OutboxRelationLayout.TimestampTzOid => new PlacedValue(PlacedValues.Timestamp(OutboxRowReader.TimestampTz(OutboxRowReader.Exactly(raw, 8), "the timestamp"))),
        OutboxRelationLayout.JsonbOid => new PlacedValue(OutboxRowReader.StrictUtf8.GetString(OutboxRowReader.JsonbText(raw))),
        _ => new PlacedValue(OutboxRowReader.StrictUtf8.GetString(raw)), // text types and json: UTF-8 text
    };

    static PlacedValue Integer(long value) => new(value.ToString(CultureInfo.InvariantCulture), value);
}
