#include "settings.hpp"

#include <algorithm>
#include <cctype>
#include <charconv>
#include <set>
#include <system_error>

namespace postern::plugins::dnsbl {
namespace {

std::string where(const sdk::Config& node) {
  return "<" + std::string(node.name()) + "> (line " + std::to_string(node.line()) + ")";
}

std::vector<std::string_view> split_items(std::string_view text) {
  std::vector<std::string_view> out;
  size_t i = 0;
  while (i < text.size()) {
    while (i < text.size() && (std::isspace(static_cast<unsigned char>(text[i])) || text[i] == ',')) ++i;
    size_t j = i;
    while (j < text.size() && !std::isspace(static_cast<unsigned char>(text[j])) && text[j] != ',') ++j;
    if (j > i) out.push_back(text.substr(i, j - i));
    i = j;
  }
  return out;
}

// Reads an optional boolean attribute; false (with `error` set) when present and invalid.
bool read_bool(const sdk::Config& node, std::string_view attr, bool& out, std::string& error) {
  if (!node.attr(attr)) return true;
  auto v = node.boolean(attr);
  if (!v) {
    error = where(node) + ": " + std::string(attr) + "=\"" + std::string(*node.attr(attr)) +
            "\" is not a boolean (true/false)";
    return false;
  }
  out = *v;
  return true;
}

bool read_duration(const sdk::Config& node, std::string_view attr, std::chrono::milliseconds& out,
                   std::string& error) {
  if (!node.attr(attr)) return true;
  auto v = node.duration(attr);
  if (!v || v->count() <= 0) {
    error = where(node) + ": " + std::string(attr) + "=\"" + std::string(*node.attr(attr)) +
            "\" is not a positive duration (250ms, 2s, 1m, 1h)";
    return false;
  }
  out = *v;
  return true;
}

bool read_count(const sdk::Config& node, std::string_view attr, size_t& out, size_t min, size_t max,
                std::string& error) {
  if (!node.attr(attr)) return true;
  auto v = node.integer(attr);
  if (!v || *v < static_cast<int64_t>(min) || *v > static_cast<int64_t>(max)) {
    error = where(node) + ": " + std::string(attr) + "=\"" + std::string(*node.attr(attr)) +
            "\" is not a number from " + std::to_string(min) + " to " + std::to_string(max);
    return false;
  }
  out = static_cast<size_t>(*v);
  return true;
}

std::string default_symbol(std::string_view zone) {
  std::string s = "DNSBL_";
  for (char c : zone) {
    s += std::isalnum(static_cast<unsigned char>(c)) ? static_cast<char>(std::toupper(static_cast<unsigned char>(c)))
                                                     : '_';
  }
  return s;
}

bool valid_symbol(std::string_view s) {
  if (s.empty() || s.size() > 64) return false;
  return std::all_of(s.begin(), s.end(), [](char c) {
    return std::isupper(static_cast<unsigned char>(c)) || std::isdigit(static_cast<unsigned char>(c)) || c == '_';
  });
}

bool parse_list(const sdk::Config& node, List& list, std::string& error) {
  list.line = node.line();
  auto zone = node.attr("zone");
  if (!zone || zone->empty()) {
    error = where(node) + ": the zone attribute is required";
    return false;
  }
  auto z = normalize_domain(*zone);
  if (!z) {
    error = where(node) + ": zone=\"" + std::string(*zone) + "\" is not a DNS name";
    return false;
  }
  list.zone = *z;

  const std::string type = node.attr_or("type", "ip");
  if (type == "ip") list.type = ListType::Ip;
  else if (type == "rhs") list.type = ListType::Rhs;
  else if (type == "uri") list.type = ListType::Uri;
  else {
    error = where(node) + ": type=\"" + type + "\" is not ip, rhs or uri";
    return false;
  }

  const std::string action = node.attr_or("action", "reject");
  if (action == "reject") list.action = Action::Reject;
  else if (action == "tempfail") list.action = Action::TempFail;
  else if (action == "score") list.action = Action::Score;
  else {
    error = where(node) + ": action=\"" + action + "\" is not reject, tempfail or score";
    return false;
  }

  if (list.action == Action::Score) {
    list.symbol = node.attr_or("symbol", default_symbol(list.zone));
    if (!valid_symbol(list.symbol)) {
      error = where(node) + ": symbol=\"" + list.symbol + "\" must be 1-64 of A-Z, 0-9 and _";
      return false;
    }
    auto w = node.attr("weight");
    if (!w) {
      error = where(node) + ": action=\"score\" needs a weight";
      return false;
    }
    // from_chars, not stod: "0.5" must not depend on the process locale.
    const auto [end, ec] = std::from_chars(w->data(), w->data() + w->size(), list.weight);
    if (ec != std::errc{} || end != w->data() + w->size()) {
      error = where(node) + ": weight=\"" + std::string(*w) + "\" is not a number";
      return false;
    }
  } else if (node.attr("symbol") || node.attr("weight")) {
    error = where(node) + ": symbol and weight only apply to action=\"score\"";
    return false;
  }

  if (auto answers = node.attr("answers")) {
    for (std::string_view item : split_items(*answers)) {
      std::string why;
      auto r = parse_range(item, why);
      if (!r || r->first.v6) {
        error = where(node) + ": answers: " + (r ? "\"" + std::string(item) + "\" is not IPv4" : why);
        return false;
      }
      list.filter.answers.add(*r);
    }
    if (list.filter.answers.empty()) {
      error = where(node) + ": answers is empty";
      return false;
    }
    list.filter.answers.seal();
    list.filter.has_answers = true;
  }
  if (auto mask = node.attr("mask")) {
    std::string_view m = *mask;
    int base = 10;
    if (m.size() > 2 && m[0] == '0' && (m[1] == 'x' || m[1] == 'X')) {
      m.remove_prefix(2);
      base = 16;
    }
    const auto [end, ec] = std::from_chars(m.data(), m.data() + m.size(), list.filter.mask, base);
    if (m.empty() || ec != std::errc{} || end != m.data() + m.size() || list.filter.mask == 0) {
      error = where(node) + ": mask=\"" + std::string(*mask) + "\" is not a non-zero number (0x0c or 12)";
      return false;
    }
  }

  if (!read_duration(node, "timeout", list.timeout, error)) return false;
  list.message = node.attr_or("message", "");
  if (!read_bool(node, "txt", list.txt, error) || !read_bool(node, "ipv4", list.ipv4, error) ||
      !read_bool(node, "ipv6", list.ipv6, error) || !read_bool(node, "sender", list.sender, error) ||
      !read_bool(node, "helo", list.helo, error)) {
    return false;
  }
  if (list.type == ListType::Ip && !list.ipv4 && !list.ipv6) {
    error = where(node) + ": ipv4 and ipv6 are both off; the list would never be asked";
    return false;
  }
  if (list.type == ListType::Rhs && !list.sender && !list.helo) {
    error = where(node) + ": sender and helo are both off; the list would never be asked";
    return false;
  }
  return true;
}

bool parse_address_list(const sdk::Config& node, AddressList& out, bool allow_mx, std::string& error) {
  for (const sdk::Config& child : node.children()) {
    const std::string_view name = child.name();
    const auto items = split_items(child.text());
    if (items.empty()) {
      error = where(child) + ": empty";
      return false;
    }
    if (name == "address") {
      for (std::string_view item : items) {
        std::string why;
        auto r = parse_range(item, why);
        if (!r) {
          error = where(child) + ": " + why;
          return false;
        }
        out.addresses.add(*r);
      }
    } else if (name == "domain" || (allow_mx && name == "mx")) {
      for (std::string_view item : items) {
        auto d = normalize_domain(item);
        if (!d) {
          error = where(child) + ": \"" + std::string(item) + "\" is not a domain name";
          return false;
        }
        (name == "mx" ? out.mx_domains : out.domains).push_back(*d);
      }
    } else {
      error = where(child) + ": unknown element in <" + std::string(node.name()) + "> (address, domain" +
              (allow_mx ? ", mx)" : ")");
      return false;
    }
  }
  out.addresses.seal();
  return true;
}

}  // namespace

std::string_view to_string(ListType t) {
  switch (t) {
    case ListType::Ip: return "ip";
    case ListType::Rhs: return "rhs";
    case ListType::Uri: return "uri";
  }
  return "?";
}

std::string_view to_string(Action a) {
  switch (a) {
    case Action::Reject: return "reject";
    case Action::TempFail: return "tempfail";
    case Action::Score: return "score";
  }
  return "?";
}

bool AnswerFilter::matches(std::string_view answer) const {
  auto ip = IpAddress::parse(answer);
  if (!ip || ip->v6) return false;
  const uint32_t value = (uint32_t{ip->bytes[0]} << 24) | (uint32_t{ip->bytes[1]} << 16) |
                         (uint32_t{ip->bytes[2]} << 8) | uint32_t{ip->bytes[3]};
  if (has_answers) {
    if (!answers.contains(*ip)) return false;
  } else {
    if (ip->bytes[0] != 127) return false;
    if (value == 0x7f000001u) return false;
    if ((value & 0xffffff00u) == 0x7fffff00u) return false;
  }
  return mask == 0 || (value & mask) != 0;
}

bool Settings::has(ListType t) const {
  return std::any_of(lists.begin(), lists.end(), [t](const List& l) { return l.type == t; });
}

std::optional<Settings> parse_settings(const sdk::Config& root, std::string& error) {
  Settings s;
  if (!read_count(root, "max-uri-names", s.max_uri_names, 1, 1000, error)) return std::nullopt;
  if (!read_count(root, "cache-size", s.cache_entries, 0, 10'000'000, error)) return std::nullopt;
  if (!read_count(root, "max-scan-bytes", s.max_scan_bytes, 1024, size_t{1} << 30, error)) return std::nullopt;
  if (!read_duration(root, "refresh", s.refresh_max, error)) return std::nullopt;
  if (!read_duration(root, "timeout", s.hook_timeout, error)) return std::nullopt;
  if (s.refresh_max < s.refresh_min) s.refresh_min = s.refresh_max;

  bool have_white = false, have_black = false, have_exc = false;
  std::set<std::pair<std::string, ListType>> seen;
  for (const sdk::Config& child : root.children()) {
    const std::string_view name = child.name();
    if (name == "list") {
      List list;
      if (!parse_list(child, list, error)) return std::nullopt;
      if (!seen.emplace(list.zone, list.type).second) {
        error = where(child) + ": zone " + list.zone + " of type " + std::string(to_string(list.type)) +
                " is listed twice";
        return std::nullopt;
      }
      // A list must answer (or give up) before the daemon gives up on the hook,
      // and a TXT lookup after a hit may take as long again.
      if (list.timeout >= s.hook_timeout) {
        error = where(child) + ": timeout " + std::to_string(list.timeout.count()) +
                "ms must be shorter than the plugin's hook timeout (" + std::to_string(s.hook_timeout.count()) +
                "ms, the timeout attribute of <plugin>)";
        return std::nullopt;
      }
      s.lists.push_back(std::move(list));
    } else if (name == "whitelist" || name == "blacklist" || name == "exceptions") {
      bool& have = name == "whitelist" ? have_white : name == "blacklist" ? have_black : have_exc;
      if (have) {
        error = where(child) + ": only one <" + std::string(name) + "> is allowed";
        return std::nullopt;
      }
      have = true;
      AddressList& target = name == "whitelist" ? s.whitelist : name == "blacklist" ? s.blacklist : s.exceptions;
      if (!parse_address_list(child, target, name == "exceptions", error)) return std::nullopt;
      if (name == "blacklist" && child.attr("message")) s.blacklist_message = std::string(*child.attr("message"));
    } else {
      error = where(child) + ": unknown element (list, whitelist, blacklist, exceptions)";
      return std::nullopt;
    }
  }
  if (s.lists.empty() && s.whitelist.addresses.empty() && s.whitelist.domains.empty() &&
      s.blacklist.addresses.empty() && s.blacklist.domains.empty()) {
    error = "<plugin name=\"dnsbl\"> (line " + std::to_string(root.line()) +
            "): no <list>, <whitelist> or <blacklist>; nothing to do";
    return std::nullopt;
  }
  return s;
}

std::string expand_message(std::string_view tmpl, std::string_view item, std::string_view client_ip,
                           std::string_view zone, std::string_view answer, std::string_view txt) {
  std::string out;
  for (size_t i = 0; i < tmpl.size(); ++i) {
    if (tmpl[i] != '%' || i + 1 == tmpl.size()) {
      out += tmpl[i];
      continue;
    }
    const std::string_view rest = tmpl.substr(i + 1);
    if (rest.starts_with("ip")) {
      out += client_ip;
      i += 2;
    } else if (rest[0] == 's') {
      out += item;
      ++i;
    } else if (rest[0] == 'z') {
      out += zone;
      ++i;
    } else if (rest[0] == 'a') {
      out += answer;
      ++i;
    } else if (rest[0] == 't') {
      out += txt;
      ++i;
    } else if (rest[0] == '%') {
      out += '%';
      ++i;
    } else {
      out += '%';
    }
  }
  return sanitize_reply_text(out, 400);
}

}  // namespace postern::plugins::dnsbl
