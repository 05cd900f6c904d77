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
        var table = OutboxTableName.Parse(options.Table);
        var c = options.Columns;
        var payloadType = options.PayloadColumnType == PayloadColumnType.Bytea ? "bytea" : "jsonb";
        return $"""
            CREATE TABLE IF NOT EXISTS {table.Quoted} (
              {Sql.Quote(c.Id)} uuid PRIMARY KEY,
              {Sql.Quote(c.AggregateType)} text NOT NULL,
              {Sql.Quote(c.AggregateId)} text NOT NULL,
              {Sql.Quote(c.EventType)} text NOT NULL,
              {Sql.Quote(c.Payload)} {payloadType} NOT NULL,
              {Sql.Quote(c.Headers)} jsonb,
              {Sql.Quote(c.CreatedAt)} timestamptz NOT NULL DEFAULT now()
            );
            """;
    }
}
