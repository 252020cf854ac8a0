#include "core/smtp/command.hpp"

#include <fmt/format.h>

#include <algorithm>
#include <cctype>
#include <charconv>
#include <limits>
#include <vector>

namespace postern::core::smtp {

std::string upper(std::string_view s) {
  std::string out(s);
  for (char& c : out) c = static_cast<char>(std::toupper(static_cast<unsigned char>(c)));
  return out;
}

bool starts_with_ci(std::string_view s, std::string_view prefix) {
  return s.size() >= prefix.size() && iequals(s.substr(0, prefix.size()), prefix);
}

Command split_command(std::string_view line) {
  const size_t sp = line.find(' ');
  return Command{upper(line.substr(0, sp)), sp == std::string_view::npos ? std::string_view{} : line.substr(sp + 1)};
}

std::optional<std::string_view> helo_argument(std::string_view arg) {
  while (!arg.empty() && arg.back() == ' ') arg.remove_suffix(1);
  bool ok = !arg.empty() && arg.size() <= 255;
  for (unsigned char c : arg) ok = ok && c > 32 && c < 127;
  if (!ok) return std::nullopt;
  return arg;
}

namespace {

Reply syntax(std::string text) {
  return Reply{501, "5.5.4", std::move(text)};
}

}  // namespace

std::optional<Reply> parse_mail_from(std::string_view arg, MailFrom& out) {
  std::string_view rest;
  PathResult path = parse_path(arg, true, true, &rest);
  if (path.status == PathStatus::Syntax) return Reply{501, "5.1.7", "Bad sender address syntax"};
  auto params = parse_params(rest, true);
  if (!params) return syntax("Syntax error in parameters");
  MailFrom m;
  std::vector<std::string> seen;
  for (const auto& p : *params) {
    if (std::find(seen.begin(), seen.end(), p.key) != seen.end()) return syntax(fmt::format("Duplicate parameter {}", p.key));
    seen.push_back(p.key);
    const std::string v = p.value.value_or("");
    if (p.key == "SIZE") {
      // RFC 1870: size-value = 1*20DIGIT. Twenty digits may exceed 2^64; such a
      // value is valid syntax and simply too large (552 in the engine), not a 501.
      uint64_t n = 0;
      auto [ptr, ec] = std::from_chars(v.data(), v.data() + v.size(), n);
      const bool digits =
          !v.empty() && v.size() <= 20 && std::all_of(v.begin(), v.end(), [](char c) { return c >= '0' && c <= '9'; });
      if (!digits || (ec != std::errc{} && ec != std::errc::result_out_of_range)) return syntax("Syntax: SIZE=<octets>");
      m.declared_size = ec == std::errc::result_out_of_range ? std::numeric_limits<uint64_t>::max() : n;
    } else if (p.key == "BODY") {
      const std::string b = upper(v);
      if (b == "7BIT") m.body = queue::BodyType::SevenBit;
      else if (b == "8BITMIME") m.body = queue::BodyType::EightBitMime;
      else return syntax("Syntax: BODY=7BIT|8BITMIME");
    } else if (p.key == "SMTPUTF8") {
      if (p.value) return syntax("Syntax: SMTPUTF8 takes no value");
      m.smtputf8 = true;
    } else if (p.key == "RET") {
      std::string r = upper(v);
      if (r != "FULL" && r != "HDRS") return syntax("Syntax: RET=FULL|HDRS");
      m.ret = std::move(r);
    } else if (p.key == "ENVID") {
      // RFC 3461 §4.4: xtext, at most 100 characters.
      if (v.empty() || v.size() > 100 || !is_valid_xtext(v)) return syntax("Syntax: ENVID=<xtext>");
      m.envid = v;
    } else if (p.key == "AUTH") {
      // RFC 4954 §5: accepted and not trusted; we do not relay AUTH= identities.
      if (v != "<>" && !is_valid_xtext(v)) return syntax("Syntax: AUTH=<xtext>");
    } else {
      return Reply{555, "5.5.4", fmt::format("Unsupported parameter {}", p.key)};
    }
  }
  if (!m.smtputf8) path = parse_path(arg, true, false);
  if (path.status == PathStatus::NonAscii) return Reply{553, "5.6.7", "Non-ASCII address requires SMTPUTF8"};
  if (path.status != PathStatus::Ok && path.status != PathStatus::Null) {
    return Reply{501, "5.1.7", "Bad sender address syntax"};
  }
  m.address = path.status == PathStatus::Null ? std::string() : path.mailbox.str();
  out = std::move(m);
  return std::nullopt;
}

std::optional<std::string> parse_notify(std::string_view v) {
  std::string u = upper(v);
  if (u == "NEVER") return u;
  std::vector<std::string> items;
  size_t pos = 0;
  for (;;) {
    const size_t comma = u.find(',', pos);
    std::string item = u.substr(pos, comma == std::string::npos ? std::string::npos : comma - pos);
    if (item != "SUCCESS" && item != "FAILURE" && item != "DELAY") return std::nullopt;
    if (std::find(items.begin(), items.end(), item) != items.end()) return std::nullopt;
    items.push_back(item);
    if (comma == std::string::npos) break;
    pos = comma + 1;
  }
  return u;
}

bool valid_orcpt(std::string_view v) {
  const size_t semi = v.find(';');
  if (semi == std::string_view::npos || semi == 0 || semi + 1 >= v.size()) return false;
  for (unsigned char c : v.substr(0, semi))
    if (!(std::isalnum(c) || c == '-')) return false;
  return is_valid_xtext(v.substr(semi + 1));
}

std::optional<Reply> parse_rcpt_to(std::string_view arg, bool smtputf8, std::string_view postmaster_domain,
                                   RcptTo& out) {
  RcptTo r;
  std::string_view rest;
  PathResult path = parse_path(arg, false, smtputf8, &rest);
  if (path.status == PathStatus::NonAscii) return Reply{553, "5.6.7", "Non-ASCII address requires SMTPUTF8"};
  if (path.status == PathStatus::Syntax) {
    // RFC 5321 §4.5.1: <postmaster> without a domain must be accepted.
    std::string_view a = arg;
    while (!a.empty() && a.front() == ' ') a.remove_prefix(1);
    if (!starts_with_ci(a, "<postmaster>")) return Reply{501, "5.1.3", "Bad recipient address syntax"};
    r.postmaster = true;
    path.status = PathStatus::Ok;
    path.mailbox.local = "postmaster";
    path.mailbox.domain = std::string(postmaster_domain);
    rest = a.substr(12);
  }
  r.mailbox = std::move(path.mailbox);
  if (path.status == PathStatus::Suspicious) {
    r.suspicious = true;
    out = std::move(r);
    return std::nullopt;
  }
  auto params = parse_params(rest, smtputf8);
  if (!params) return syntax("Syntax error in parameters");
  std::vector<std::string> seen;
  for (const auto& p : *params) {
    if (std::find(seen.begin(), seen.end(), p.key) != seen.end()) return syntax(fmt::format("Duplicate parameter {}", p.key));
    seen.push_back(p.key);
    if (p.key == "NOTIFY") {
      auto n = p.value ? parse_notify(*p.value) : std::nullopt;
      if (!n) return syntax("Syntax: NOTIFY=NEVER|SUCCESS,FAILURE,DELAY");
      r.params.notify = *n;
    } else if (p.key == "ORCPT") {
      if (!p.value || !valid_orcpt(*p.value)) return syntax("Syntax: ORCPT=addr-type;xtext");
      r.params.orcpt = *p.value;
    } else {
      return Reply{555, "5.5.4", fmt::format("Unsupported parameter {}", p.key)};
    }
  }
  out = std::move(r);
  return std::nullopt;
}

std::optional<BdatCommand> parse_bdat(std::string_view arg) {
  const size_t sp = arg.find(' ');
  const std::string_view num = arg.substr(0, sp);
  const std::string_view tail = sp == std::string_view::npos ? std::string_view{} : arg.substr(sp + 1);
  BdatCommand b;
  auto [ptr, ec] = std::from_chars(num.data(), num.data() + num.size(), b.size);
  b.last = iequals(tail, "LAST");
  if (num.empty() || ec != std::errc{} || ptr != num.data() + num.size() || (!tail.empty() && !b.last)) {
    return std::nullopt;
  }
  return b;
}

}  // namespace postern::core::smtp
