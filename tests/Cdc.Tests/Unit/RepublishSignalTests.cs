using System.Text;
using Cdc.Table;

namespace Cdc.Tests.Unit;

public class RepublishSignalTests
{
    static RepublishSignal? Parse(string json, out string? error) => RepublishSignal.Parse(Encoding.UTF8.GetBytes(json), out error);

    [Theory]
    [InlineData("""{"slot":"s","action":1,"ids":["00000000-0000-0000-0000-000000000000"]}""")]
    [InlineData("""{"slot":"s","action":{"republish":true}}""")]
    [InlineData("""{"slot":"s","action":["republish"]}""")]
    [InlineData("""{"slot":"s","action":null}""")]
    public void An_action_that_is_not_a_string_is_malformed_not_an_exception(string json)
    {
        Assert.Null(Parse(json, out var error));
        Assert.Contains("action", error);
    }

    [Fact]
    public void Uuids_are_compared_in_PostgreSQLs_text_form_whatever_their_case()
    {
        var id = Guid.NewGuid();
        var signal = Parse($$"""{"slot":"s","action":"republish","ids":["{{id.ToString().ToUpperInvariant()}}","order-7"]}""", out _);
        Assert.Equal([id.ToString("D"), "order-7"], signal!.Ids);
    }
}
