using Cdc.Contracts;

namespace Cdc.Tests.Unit;

public class TopicNameTests
{
    [Theory]
    [InlineData("a.b_c-D9", true)]
    [InlineData("outbox.event.order", true)]
    [InlineData("...", true)]
    [InlineData(".", false)]
    [InlineData("..", false)]
    [InlineData("", false)]
    [InlineData(null, false)]
    [InlineData("with space", false)]
    [InlineData("events/order", false)]
    [InlineData("ordér", false)]
    [InlineData("order:placed", false)]
    public void Follows_kafkas_rule(string? topic, bool valid) => Assert.Equal(valid, TopicName.IsValid(topic));

    [Fact]
    public void Allows_at_most_249_characters()
    {
        Assert.True(TopicName.IsValid(new string('a', 249)));
        Assert.False(TopicName.IsValid(new string('a', 250)));
    }
}
