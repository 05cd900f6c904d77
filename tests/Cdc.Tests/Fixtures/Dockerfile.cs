using System.Text;
using System.Text.RegularExpressions;

namespace Cdc.Tests.Fixtures;

/// <summary>One instruction of a Dockerfile: its keyword (upper case), the rest of its line(s), and where it starts.</summary>
public sealed record DockerInstruction(string Keyword, string Arguments, int Line)
{
    /// <summary>The JSON-array form (<c>["a", "b"]</c>) of ENTRYPOINT/CMD, or null for the shell form.</summary>
    public string[]? ExecForm =>
        Arguments.TrimStart().StartsWith('[')
            ? System.Text.Json.JsonSerializer.Deserialize<string[]>(Arguments)
            : null;

    /// <summary>COPY/ADD: the flags (<c>--from=build</c>), the sources and the destination.</summary>
    public (Dictionary<string, string> Flags, string[] Sources, string Destination) CopyParts()
    {
        var words = Arguments.Split((char[])[' ', '\t'], StringSplitOptions.RemoveEmptyEntries);
        var flags = words.TakeWhile(w => w.StartsWith("--", StringComparison.Ordinal))
            .Select(w => w[2..].Split('=', 2))
            .ToDictionary(kv => kv[0], kv => kv.Length > 1 ? kv[1] : "");
        var rest = words.Skip(flags.Count).ToArray();
        if (rest.Length < 2)
            throw new FormatException($"line {Line}: COPY needs a source and a destination: {Arguments}");
        return (flags, rest[..^1], rest[^1]);
    }

    /// <summary>ENV's <c>KEY=value</c> pairs (values may be empty or double-quoted).</summary>
    public IEnumerable<KeyValuePair<string, string>> EnvPairs() =>
        Regex.Matches(Arguments, """([A-Za-z_][A-Za-z0-9_]*)=("[^"]*"|\S*)""")
            .Select(m => KeyValuePair.Create(m.Groups[1].Value, m.Groups[2].Value.Trim('"')));
}

/// <summary>A build stage: the image it starts from, its name (<c>AS name</c>), and its instructions.</summary>
public sealed record DockerStage(string BaseImage, string? Name, string? Platform, IReadOnlyList<DockerInstruction> Instructions)
{
    public IEnumerable<DockerInstruction> All(string keyword) => Instructions.Where(i => i.Keyword == keyword);
}

/// <summary>The parts of Dockerfile syntax this repository's Dockerfile uses: comments, line continuations, stages.</summary>
public static class Dockerfile
{
    public static List<DockerStage> Parse(string text)
    {
        var instructions = new List<DockerInstruction>();
        var lines = text.Replace("\r\n", "\n").Split('\n');
        for (var i = 0; i < lines.Length; i++)
        {
            var line = lines[i].Trim();
            if (line.Length == 0 || line.StartsWith('#'))
                continue; // comments, and parser directives (# syntax=...)
            var start = i + 1;
            var joined = new StringBuilder();
            // A trailing backslash continues the instruction; comment lines inside it are dropped, as Docker does.
            while (line.EndsWith('\\'))
            {
                joined.Append(line[..^1]).Append(' ');
                do i++; while (i < lines.Length && lines[i].TrimStart().StartsWith('#'));
                line = i < lines.Length ? lines[i].Trim() : "";
            }
            joined.Append(line);
            var full = joined.ToString().Trim();
            var space = full.IndexOfAny([' ', '\t']);
            var keyword = (space < 0 ? full : full[..space]).ToUpperInvariant();
            var arguments = space < 0 ? "" : Regex.Replace(full[space..].Trim(), @"\s+", " ");
            instructions.Add(new DockerInstruction(keyword, arguments, start));
        }

        var stages = new List<DockerStage>();
        foreach (var instruction in instructions)
        {
            if (instruction.Keyword == "FROM")
            {
                var m = Regex.Match(instruction.Arguments, @"^(?:--platform=(\S+)\s+)?(\S+)(?:\s+AS\s+(\S+))?$", RegexOptions.IgnoreCase);
                if (!m.Success)
                    throw new FormatException($"line {instruction.Line}: cannot read FROM {instruction.Arguments}");
                stages.Add(new DockerStage(m.Groups[2].Value, m.Groups[3].Success ? m.Groups[3].Value : null,
                    m.Groups[1].Success ? m.Groups[1].Value : null, new List<DockerInstruction>()));
            }
            else if (stages.Count == 0)
                throw new FormatException($"line {instruction.Line}: {instruction.Keyword} before the first FROM");
            else
                ((List<DockerInstruction>)stages[^1].Instructions).Add(instruction);
        }
        return stages;
    }
}

/// <summary>
/// A <c>.dockerignore</c>: patterns relative to the context root, matched like Docker does (Go's filepath.Match plus
/// <c>**</c>; a matching folder excludes everything in it; <c>!</c> re-includes; the last matching pattern wins).
/// </summary>
public sealed class DockerIgnore
{
    readonly List<(Regex Pattern, bool Exclude, string Text)> _rules = [];

    public DockerIgnore(string text)
    {
        foreach (var raw in text.Replace("\r\n", "\n").Split('\n'))
        {
            var line = raw.Trim();
            if (line.Length == 0 || line.StartsWith('#'))
                continue;
            var exclude = !line.StartsWith('!');
            var pattern = (exclude ? line : line[1..]).Trim().Trim('/'); // Docker cleans patterns: "tests/" is "tests"
            if (pattern.StartsWith("./", StringComparison.Ordinal))
                pattern = pattern[2..];
            _rules.Add((new Regex("^" + ToRegex(pattern) + "$"), exclude, line));
        }
    }

    public IEnumerable<string> Patterns => _rules.Select(r => r.Text);

    /// <summary>Whether the file or folder at <paramref name="relativePath"/> ('/'-separated) is left out of the context.</summary>
    public bool IsIgnored(string relativePath)
    {
        var path = relativePath.Replace('\\', '/').Trim('/');
        var ignored = false;
        foreach (var (pattern, exclude, _) in _rules)
            if (MatchesOrParentMatches(pattern, path))
                ignored = exclude;
        return ignored;
    }

    static bool MatchesOrParentMatches(Regex pattern, string path)
    {
        if (pattern.IsMatch(path))
            return true;
        for (var slash = path.IndexOf('/'); slash >= 0; slash = path.IndexOf('/', slash + 1))
            if (pattern.IsMatch(path[..slash]))
                return true;
        return false;
    }

    static string ToRegex(string pattern)
    {
        var regex = new StringBuilder();
        for (var i = 0; i < pattern.Length; i++)
        {
            var c = pattern[i];
            if (c == '*' && i + 1 < pattern.Length && pattern[i + 1] == '*')
            {
                // "**/" matches any number of folders, including none; "**" alone matches anything.
                if (i + 2 < pattern.Length && pattern[i + 2] == '/')
                {
                    regex.Append("(?:.*/)?");
                    i += 2;
                }
                else
                {
                    regex.Append(".*");
                    i++;
                }
            }
            else if (c == '*')
                regex.Append("[^/]*");
            else if (c == '?')
                regex.Append("[^/]");
            else
                regex.Append(Regex.Escape(c.ToString()));
        }
        return regex.ToString();
    }
}
