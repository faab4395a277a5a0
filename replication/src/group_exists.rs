//! Whether a group that a member on a new disk belongs to already exists: the question
//! both a shard's group and the shard map's group ask before a new store may vote.

use crate::types::NodeId;
use std::future::Future;
use std::time::Duration;

/// Pause between two rounds of questions while too few members answer.
const ASK_PAUSE: Duration = Duration::from_millis(200);

/// What a member on a new store found out about its group.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Found {
    /// A majority of the members (this one included) hold no leader's entry: the group is
    /// new and this member starts it as usual.
    NewGroup,
    /// A peer holds a leader's entry: the group exists and this member's replica must be
    /// rebuilt from its peers before it votes.
    ExistingGroup,
}

/// Asks each of `members` but `me` for the last index of its log (`ask`: `None` for no
/// answer, `Some(None)` for an empty log) until one holds a leader's entry or a majority
/// hold none. Index 0 is the first membership, written by whoever initialised the group
/// and not yet agreed: only a later entry means the group exists. `group` names the group
/// in the log.
pub async fn find_out<F, Fut>(group: &str, me: NodeId, members: &[NodeId], mut ask: F) -> Found
where
    F: FnMut(NodeId) -> Fut,
    Fut: Future<Output = Option<Option<u64>>>,
{
    let majority = members.len() / 2 + 1;
    let mut rounds = 0u32;
    loop {
        let mut empty = 1;
        for peer in members.iter().filter(|p| **p != me) {
            match ask(*peer).await {
                Some(Some(index)) if index > 0 => return Found::ExistingGroup,
                Some(_) => empty += 1,
                None => {}
            }
        }
        if empty >= majority {
            return Found::NewGroup;
        }
        rounds += 1;
        if rounds.is_multiple_of(25) {
            tracing::info!(
                group,
                rounds,
                "waiting for a majority of the group's members to answer"
            );
        }
        tokio::time::sleep(ASK_PAUSE).await;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn one_peer_with_a_leaders_entry_means_the_group_exists() {
        let found = find_out("g", 1, &[1, 2, 3], |peer| async move {
            (peer == 3).then_some(Some(7))
        })
        .await;
        assert_eq!(found, Found::ExistingGroup);
    }

    #[tokio::test]
    async fn a_majority_of_empty_logs_means_a_new_group() {
        let found = find_out("g", 1, &[1, 2, 3], |peer| async move {
            (peer == 2).then_some(Some(0))
        })
        .await;
        assert_eq!(found, Found::NewGroup);
    }

    #[tokio::test(start_paused = true)]
    async fn too_few_answers_ask_again() {
        let mut asked = 0u32;
        let found = find_out("g", 1, &[1, 2, 3, 4, 5], |_| {
            asked += 1;
            let answer = (asked > 8).then_some(None);
            async move { answer }
        })
        .await;
        assert_eq!(found, Found::NewGroup);
        assert!(
            asked > 8,
            "it asked again until a majority answered: {asked}"
        );
    }
}
