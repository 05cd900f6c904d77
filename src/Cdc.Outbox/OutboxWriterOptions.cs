using Cdc.Contracts;

namespace Cdc.Outbox;

/// <summary>How the payload column is declared; decides which payloads fit and how the connector reads them.</summary>
public enum PayloadColumnType
{
    /// <summary>JSON payloads only; consumers get the JSON as PostgreSQL renders jsonb.</summary>
    Jsonb,
    /// <summary>Any payload; the content type travels in the <c>content-type</c> header.</summary>
    Bytea,
}

/// <summary>Where and how <see cref="OutboxWriter"/> writes. Validated when the writer is created.</summary>
public sealed class OutboxWriterOptions
{
    /// <summary>The outbox table, <c>schema.table</c> or <c>table</c> (in <c>public</c>); the connector's <c>Cdc:Postgres:Table</c>.</summary>
    public string Table { get; set; } = "public.outbox";

    /// <summary>The connector's <c>Cdc:Postgres:Columns</c>.</summary>
    public OutboxColumns Columns { get; set; } = new();

    public PayloadColumnType PayloadColumnType { get; set; } = PayloadColumnType.Jsonb;

    /// <summary>
    /// Delete the rows again right after inserting them, in the same transaction. The connector still relays them
    /// (it reads the INSERT from the WAL), and the table never grows: no cleanup job, no bloat.
    /// </summary>
    public bool DeleteAfterInsert { get; set; }

    /// <summary>Prefix of the logical-decoding messages <see cref="OutboxWriter.EmitAsync"/> writes; the connector's <c>Cdc:Postgres:MessagePrefix</c>.</summary>
    public string MessagePrefix { get; set; } = "cdc.outbox";

    /// <summary>Throws <see cref="ArgumentException"/> naming the first option that cannot work.</summary>
    public void Validate()
    {
        ParseTable();
        ArgumentNullException.ThrowIfNull(Columns, nameof(Columns));
        foreach (var (name, value) in Columns.Named())
        {
            if (string.IsNullOrWhiteSpace(value))
                throw new ArgumentException($"OutboxWriterOptions.Columns.{name} is required", nameof(Columns));
            if (value.Contains('"'))
                throw new ArgumentException($"OutboxWriterOptions.Columns.{name} '{value}' must not contain '\"'", nameof(Columns));
        }
        if (!Enum.IsDefined(PayloadColumnType))
            throw new ArgumentException($"OutboxWriterOptions.PayloadColumnType {PayloadColumnType} is not Jsonb or Bytea", nameof(PayloadColumnType));
        if (string.IsNullOrWhiteSpace(MessagePrefix))
            throw new ArgumentException("OutboxWriterOptions.MessagePrefix is required", nameof(MessagePrefix));
    }

    /// <summary><see cref="Table"/> parsed as the connector parses <c>Cdc:Postgres:Table</c>; an <see cref="ArgumentException"/> naming it if it cannot be.</summary>
    internal TableName ParseTable() =>
        TableName.TryParse(Table, out var table, out var error) ? table : throw new ArgumentException($"OutboxWriterOptions.Table: {error}", nameof(Table));
}
