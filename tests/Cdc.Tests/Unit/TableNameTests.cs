using Cdc.Contracts;

namespace Cdc.Tests.Unit;

public class TableNameTests
{
    [Theory]
    [InlineData("outbox", "public", "outbox")]
    [InlineData("billing.outbox", "billing", "outbox")]
    // Taken as written, case included (psql would fold unquoted names to lower case); quoting changes nothing here.
    [InlineData("Sales.Outbox", "Sales", "Outbox")]
    [InlineData("\"Sales\".\"Outbox\"", "Sales", "Outbox")]
    [InlineData("Sales.\"Outbox\"", "Sales", "Outbox")]
    [InlineData("\"Outbox\"", "public", "Outbox")]
    // Quotes are needed only for a dot or a quote inside a name; a quote inside quotes is doubled.
    [InlineData("\"my.schema\".\"out.box\"", "my.schema", "out.box")]
    [InlineData("\"a.b\"", "public", "a.b")]
    [InlineData("app.\"say \"\"hi\"\"\"", "app", "say \"hi\"")]
    [InlineData("\"\"\"\".x", "\"", "x")]
    [InlineData("my schema.my table", "my schema", "my table")]
    public void Parses_schema_and_table(string value, string schema, string name)
    {
        var table = TableName.Parse(value);
        Assert.Equal(new TableName(schema, name), table);
        // What ToString writes reads back as the same table.
        Assert.Equal(table, TableName.Parse(table.ToString()));
    }

    [Theory]
    [InlineData("public", "outbox", "\"public\".\"outbox\"", "public.outbox")]
    [InlineData("Sales", "Outbox", "\"Sales\".\"Outbox\"", "Sales.Outbox")]
    [InlineData("my.schema", "a\"b", "\"my.schema\".\"a\"\"b\"", "\"my.schema\".\"a\"\"b\"")]
    public void Quotes_for_sql_and_writes_back_what_parses(string schema, string name, string quoted, string written)
    {
        var table = new TableName(schema, name);
        Assert.Equal(quoted, table.Quoted);
        Assert.Equal(written, table.ToString());
    }

    [Theory]
    [InlineData(null, "is required")]
    [InlineData(" ", "is required")]
    [InlineData("a.b.c", "more than two names")]
    [InlineData(".outbox", "a name is empty")]
    [InlineData("public.", "a name is empty")]
    [InlineData("public. ", "a name is empty")]
    [InlineData("\"\".outbox", "a name is empty")]
    [InlineData("pub\"lic.outbox", "inside an unquoted name")]
    [InlineData("public.\"outbox", "not closed")]
    [InlineData("\"public\"x.outbox", "followed by '.'")]
    public void Says_what_is_wrong_without_naming_a_key(string? value, string problem)
    {
        var e = Assert.Throws<FormatException>(() => TableName.Parse(value));
        Assert.Contains(problem, e.Message);
        Assert.False(TableName.TryParse(value, out _, out var error));
        Assert.Equal(e.Message, error);
        if (value is { Length: > 0 } && !string.IsNullOrWhiteSpace(value))
            Assert.StartsWith($"'{value}' must be 'schema.table' or 'table'", e.Message);
    }

    [Fact]
    public void Quotes_identifiers_by_doubling_quotes() =>
        Assert.Equal("\"a\"\"b.c\"", SqlIdentifier.Quote("a\"b.c"));
}
