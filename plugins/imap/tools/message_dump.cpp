// imap_message_dump: prints, for each message file given, what FETCH would send for
// BODYSTRUCTURE, BODY, ENVELOPE, and BODY[<section>] for every section of the message
// (each part, and .HEADER, .MIME, .TEXT, .HEADER.FIELDS, .HEADER.FIELDS.NOT where
// they apply) plus one part number past the last. Used to show that a change of the
// message code leaves the IMAP output byte for byte as it was:
//   imap_message_dump FILE... > before.txt; (change, rebuild) ...; diff before.txt after.txt
#include "message.hpp"

#include <cstdio>
#include <fstream>
#include <iostream>
#include <iterator>
#include <memory>
#include <sstream>
#include <string>
#include <vector>

namespace {

using postern::imap::Section;

std::string spec_of(const std::vector<uint32_t>& path) {
  std::string out;
  for (uint32_t n : path) {
    if (!out.empty()) out += '.';
    out += std::to_string(n);
  }
  return out;
}

void print_section(const postern::imap::ParsedMessage& m, const std::vector<uint32_t>& path, Section::Kind kind,
                   std::string_view suffix, std::vector<std::string> fields = {}) {
  Section s;
  s.part = path;
  s.kind = kind;
  s.fields = std::move(fields);
  std::string spec = spec_of(path);
  if (!suffix.empty()) spec += spec.empty() ? std::string(suffix.substr(1)) : std::string(suffix);
  const std::string text = postern::imap::section_text(m, s);
  std::cout << "BODY[" << spec << "] {" << text.size() << "}\r\n" << text << "\r\n";
}

// Every section below `path` (a part that exists), depth first.
void walk(const postern::imap::ParsedMessage& m, std::vector<uint32_t>& path, int depth) {
  if (depth > 300) return;
  for (uint32_t n = 1;; ++n) {
    path.push_back(n);
    const bool exists = postern::imap::section_exists(m, path);
    print_section(m, path, Section::Kind::Full, "");
    if (!exists) {
      path.pop_back();
      return;
    }
    print_section(m, path, Section::Kind::Mime, ".MIME");
    print_section(m, path, Section::Kind::Header, ".HEADER");
    print_section(m, path, Section::Kind::Text, ".TEXT");
    print_section(m, path, Section::Kind::HeaderFields, ".HEADER.FIELDS (FROM SUBJECT CONTENT-TYPE)",
                  {"From", "Subject", "content-type"});
    print_section(m, path, Section::Kind::HeaderFieldsNot, ".HEADER.FIELDS.NOT (RECEIVED)", {"Received"});
    walk(m, path, depth + 1);
    path.pop_back();
  }
}

}  // namespace

int main(int argc, char** argv) {
  for (int i = 1; i < argc; ++i) {
    std::ifstream in(argv[i], std::ios::binary);
    if (!in) {
      std::cerr << "cannot read " << argv[i] << "\n";
      return 1;
    }
    std::string raw((std::istreambuf_iterator<char>(in)), std::istreambuf_iterator<char>());
    auto m = postern::imap::ParsedMessage::parse(std::make_shared<const std::string>(std::move(raw)));
    std::cout << "=== " << argv[i] << "\r\n";
    std::cout << "BODYSTRUCTURE " << postern::imap::body_structure(*m, true) << "\r\n";
    std::cout << "BODY " << postern::imap::body_structure(*m, false) << "\r\n";
    std::cout << "ENVELOPE " << postern::imap::envelope(*m) << "\r\n";
    std::vector<uint32_t> path;
    print_section(*m, path, Section::Kind::Header, ".HEADER");
    print_section(*m, path, Section::Kind::Text, ".TEXT");
    print_section(*m, path, Section::Kind::HeaderFields, ".HEADER.FIELDS (FROM SUBJECT CONTENT-TYPE)",
                  {"From", "Subject", "content-type"});
    print_section(*m, path, Section::Kind::HeaderFieldsNot, ".HEADER.FIELDS.NOT (RECEIVED)", {"Received"});
    walk(*m, path, 0);
  }
  return 0;
}
