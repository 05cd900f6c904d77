using Cdc.Contracts;

namespace Cdc.Outbox;

/// <summary>DDL for the outbox table, for a service's migrations.</summary>
public static class OutboxSchema
{
    /// <summary>
    /// <c>CREATE TABLE IF NOT EXISTS</c> for the contract's outbox table with the configured table and column names and
    /// payload type. The schema must exist. The connector's publication and slot are created by the connector.
    /// </summary>
    public static string CreateTableSql(OutboxWriterOptions? options = null)
    {
        options ??= new OutboxWriterOptions();
        options.Validate();
        var table = options.ParseTable();
        var c = options.Columns;
        var payloadType = options.PayloadColumnType == PayloadColumnType.Bytea ? "bytea" : "jsonb";
        return $"""
            CREATE TABLE IF NOT EXISTS {table.Quoted} (
              {SqlIdentifier.Quote(c.Id)} uuid PRIMARY KEY,
              {SqlIdentifier.Quote(c.AggregateType)} text NOT NULL,
              {SqlIdentifier.Quote(c.AggregateId)} text NOT NULL,
              {SqlIdentifier.Quote(c.EventType)} text NOT NULL,
              {SqlIdentifier.Quote(c.Payload)} {payloadType} NOT NULL,
              {SqlIdentifier.Quote(c.Headers)} jsonb,
              {SqlIdentifier.Quote(c.CreatedAt)} timestamptz NOT NULL DEFAULT now()
            );
            """;
    }
}
