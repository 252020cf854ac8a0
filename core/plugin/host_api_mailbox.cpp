// PLACEHOLDER until the module lands this session: every call reports
// POSTERN_ERR_UNAVAILABLE. Replaced by the real implementation.
#include "core/plugin/host_api_v12.hpp"

namespace postern::core::plugin::abi12 {

postern_str_t last_error(postern_host_t* /*host*/) { return postern_str_t{nullptr, 0}; }
void set_last_error(std::string_view /*detail*/) {}
postern_status_t dir_authenticate(postern_host_t* /*host*/, postern_str_t /*login*/, postern_str_t /*password*/, uint32_t /*service*/, postern_account_info_t* /*out*/) { return POSTERN_ERR_UNAVAILABLE; }
postern_status_t dir_account(postern_host_t* /*host*/, postern_str_t /*address*/, postern_account_info_t* /*out*/) { return POSTERN_ERR_UNAVAILABLE; }
postern_status_t mbox_open(postern_host_t* /*host*/, postern_str_t /*account*/, postern_mailbox_t** /*out*/) { return POSTERN_ERR_UNAVAILABLE; }
void mbox_release(postern_mailbox_t* /*mb*/) {}
void mresult_free(postern_mresult_t* /*r*/) {}
postern_status_t mbox_list_folders(postern_mailbox_t* /*mb*/, postern_mresult_t** /*out*/) { return POSTERN_ERR_UNAVAILABLE; }
postern_status_t mbox_folder_status(postern_mailbox_t* /*mb*/, postern_str_t /*name*/, postern_mresult_t** /*out*/) { return POSTERN_ERR_UNAVAILABLE; }
postern_status_t mbox_create_folder(postern_mailbox_t* /*mb*/, postern_str_t /*name*/, postern_str_t /*special_use*/) { return POSTERN_ERR_UNAVAILABLE; }
postern_status_t mbox_delete_folder(postern_mailbox_t* /*mb*/, postern_str_t /*name*/) { return POSTERN_ERR_UNAVAILABLE; }
postern_status_t mbox_rename_folder(postern_mailbox_t* /*mb*/, postern_str_t /*from*/, postern_str_t /*to*/) { return POSTERN_ERR_UNAVAILABLE; }
postern_status_t mbox_subscribe(postern_mailbox_t* /*mb*/, postern_str_t /*name*/, int32_t /*subscribed*/) { return POSTERN_ERR_UNAVAILABLE; }
postern_status_t mbox_claim_recent(postern_mailbox_t* /*mb*/, postern_str_t /*name*/, uint32_t* /*first_recent_uid*/) { return POSTERN_ERR_UNAVAILABLE; }
postern_status_t mbox_changes_since(postern_mailbox_t* /*mb*/, postern_str_t /*name*/, uint32_t /*uidvalidity*/, uint64_t /*since*/, postern_mresult_t** /*out*/) { return POSTERN_ERR_UNAVAILABLE; }
postern_status_t mbox_read_message(postern_mailbox_t* /*mb*/, postern_str_t /*folder*/, uint32_t /*uid*/, postern_mresult_t** /*out*/) { return POSTERN_ERR_UNAVAILABLE; }
postern_status_t mbox_store_flags(postern_mailbox_t* /*mb*/, postern_str_t /*folder*/, const uint32_t* /*uids*/, size_t /*uid_count*/, postern_flag_op_t /*op*/, uint32_t /*flags*/, const postern_str_t* /*keywords*/, size_t /*keyword_count*/, int32_t /*has_unchanged_since*/, uint64_t /*unchanged_since*/, postern_mresult_t** /*out*/) { return POSTERN_ERR_UNAVAILABLE; }
postern_status_t mbox_expunge(postern_mailbox_t* /*mb*/, postern_str_t /*folder*/, const uint32_t* /*uids*/, size_t /*uid_count*/, postern_expunge_mode_t /*mode*/, postern_mresult_t** /*out*/) { return POSTERN_ERR_UNAVAILABLE; }
postern_status_t mbox_append(postern_mailbox_t* /*mb*/, postern_str_t /*folder*/, postern_bytes_t /*message*/, uint32_t /*flags*/, const postern_str_t* /*keywords*/, size_t /*keyword_count*/, int64_t /*internal_date*/, postern_mresult_t** /*out*/) { return POSTERN_ERR_UNAVAILABLE; }
postern_status_t mbox_copy(postern_mailbox_t* /*mb*/, postern_str_t /*from*/, const uint32_t* /*uids*/, size_t /*uid_count*/, postern_str_t /*to*/, postern_mresult_t** /*out*/) { return POSTERN_ERR_UNAVAILABLE; }
postern_status_t mbox_move(postern_mailbox_t* /*mb*/, postern_str_t /*from*/, const uint32_t* /*uids*/, size_t /*uid_count*/, postern_str_t /*to*/, postern_mresult_t** /*out*/) { return POSTERN_ERR_UNAVAILABLE; }
postern_status_t mbox_usage(postern_mailbox_t* /*mb*/, uint64_t* /*used_bytes*/, uint64_t* /*quota_bytes*/) { return POSTERN_ERR_UNAVAILABLE; }
postern_status_t mbox_open_folder(postern_mailbox_t* /*mb*/, postern_str_t /*name*/, postern_folder_view_t** /*view*/, postern_mresult_t** /*out*/) { return POSTERN_ERR_UNAVAILABLE; }
postern_status_t view_refresh(postern_folder_view_t* /*view*/, postern_mresult_t** /*out*/) { return POSTERN_ERR_UNAVAILABLE; }
void view_release(postern_folder_view_t* /*view*/) {}

}  // namespace postern::core::plugin::abi12
