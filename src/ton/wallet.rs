//! Wallet contracts v4r2 and v5r1 (W5): wallet ids, state init and addresses.
//!
//! A wallet's address is the hash of its StateInit (contract code + initial data), so it
//! depends on the version, the public key and the wallet id, and for v5r1 the wallet id
//! depends on the network. Code cells come from tonlib-core.

use std::fmt;
use std::str::FromStr;

use serde::{Deserialize, Serialize};
use tonlib_core::cell::{ArcCell, Cell};
use tonlib_core::tlb_types::block::state_init::StateInit;
use tonlib_core::tlb_types::tlb::TLB;
use tonlib_core::wallet::version_helper::VersionHelper;
use tonlib_core::wallet::versioned::v4::WalletDataV4;
use tonlib_core::wallet::versioned::v5::WalletDataV5;
use tonlib_core::wallet::wallet_version::WalletVersion as TonlibWalletVersion;
use tonlib_core::{TonAddress, TonHash};

use super::address;
use super::keys::PublicKey;

/// Wallet contract versions we sign for.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub enum WalletVersion {
    #[serde(rename = "v4r2")]
    V4R2,
    #[serde(rename = "v5r1")]
    V5R1,
}

impl WalletVersion {
    pub const ALL: [WalletVersion; 2] = [WalletVersion::V4R2, WalletVersion::V5R1];

    /// How many internal messages one external message may carry: v4r2 sends one per
    /// reference of the body cell (4 max); v5r1 takes an action list capped at 255.
    pub const fn max_messages(self) -> usize {
        match self {
            WalletVersion::V4R2 => 4,
            WalletVersion::V5R1 => 255,
        }
    }

    pub fn as_str(self) -> &'static str {
        match self {
            WalletVersion::V4R2 => "v4r2",
            WalletVersion::V5R1 => "v5r1",
        }
    }

    pub(crate) fn tonlib(self) -> TonlibWalletVersion {
        match self {
            WalletVersion::V4R2 => TonlibWalletVersion::V4R2,
            WalletVersion::V5R1 => TonlibWalletVersion::V5R1,
        }
    }

    /// The contract code cell.
    pub fn code(self) -> &'static ArcCell {
        VersionHelper::get_code(self.tonlib()).expect("tonlib-core ships v4r2 and v5r1 code")
    }

    pub fn code_hash(self) -> TonHash {
        self.code().as_ref().cell_hash()
    }

    /// Recognises a deployed contract by its code hash.
    pub fn from_code_hash(hash: &TonHash) -> Option<WalletVersion> {
        WalletVersion::ALL
            .into_iter()
            .find(|v| &v.code_hash() == hash)
    }
}

impl fmt::Display for WalletVersion {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl FromStr for WalletVersion {
    type Err = String;

    /// Accepts the names wallets and SDKs use: `v4r2`/`v4`, `v5r1`/`v5`/`w5`.
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s.trim().to_ascii_lowercase().as_str() {
            "v4r2" | "v4" | "wallet_v4r2" => Ok(WalletVersion::V4R2),
            "v5r1" | "v5" | "w5" | "wallet_v5r1" => Ok(WalletVersion::V5R1),
            _ => Err("wallet_version must be v4r2 or v5r1".to_string()),
        }
    }
}

/// The TON network a wallet lives on.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Network {
    Mainnet,
    Testnet,
}

impl Network {
    /// The network's global id, which v5r1 mixes into its wallet id and TON Connect calls
    /// `chain`.
    pub const fn global_id(self) -> i32 {
        match self {
            Network::Mainnet => -239,
            Network::Testnet => -3,
        }
    }

    pub fn is_testnet(self) -> bool {
        self == Network::Testnet
    }
}

/// v4r2's default subwallet id, the same on every network (plus the workchain).
pub const V4_DEFAULT_WALLET_ID: i32 = 698_983_191;

/// The default wallet id of a version on a network, for the basechain.
pub const fn default_wallet_id(version: WalletVersion, network: Network) -> i32 {
    match version {
        WalletVersion::V4R2 => V4_DEFAULT_WALLET_ID,
        // W5 client context: bit 31 set (client wallet), workchain 0, version 0, subwallet 0;
        // XORed with the network id so that a signature for one network is useless on
        // another. Mainnet gives 0x7FFFFF11 (2147483409).
        WalletVersion::V5R1 => network.global_id() ^ (0x8000_0000u32 as i32),
    }
}

/// One wallet contract instance: version, network, wallet id and public key, and the
/// address they determine.
#[derive(Clone, PartialEq, Eq)]
pub struct WalletContract {
    version: WalletVersion,
    network: Network,
    wallet_id: i32,
    public_key: PublicKey,
    address: TonAddress,
}

impl WalletContract {
    /// The standard basechain wallet of this key on this network.
    pub fn new(version: WalletVersion, network: Network, public_key: PublicKey) -> Self {
        Self::with_wallet_id(
            version,
            network,
            public_key,
            default_wallet_id(version, network),
        )
    }

    pub fn with_wallet_id(
        version: WalletVersion,
        network: Network,
        public_key: PublicKey,
        wallet_id: i32,
    ) -> Self {
        let mut wallet = WalletContract {
            version,
            network,
            wallet_id,
            public_key,
            address: TonAddress::NULL,
        };
        let hash = wallet.state_init_cell().cell_hash();
        wallet.address = TonAddress::new(0, hash);
        wallet
    }

    pub fn version(&self) -> WalletVersion {
        self.version
    }

    pub fn network(&self) -> Network {
        self.network
    }

    pub fn wallet_id(&self) -> i32 {
        self.wallet_id
    }

    pub fn public_key(&self) -> PublicKey {
        self.public_key
    }

    pub fn address(&self) -> &TonAddress {
        &self.address
    }

    pub fn raw_address(&self) -> String {
        address::raw(&self.address)
    }

    /// User-friendly form with this wallet's network flag.
    pub fn friendly_address(&self, bounceable: bool) -> String {
        address::friendly(&self.address, bounceable, self.network.is_testnet())
    }

    /// The contract's persistent data at a given seqno.
    pub fn data_cell(&self, seqno: u32) -> Cell {
        let key = TonHash::from(self.public_key.0);
        let cell = match self.version {
            WalletVersion::V4R2 => {
                let mut data = WalletDataV4::new(self.wallet_id, key);
                data.seqno = seqno;
                data.to_cell()
            }
            WalletVersion::V5R1 => {
                let mut data = WalletDataV5::new(self.wallet_id, key);
                data.seqno = seqno;
                data.to_cell()
            }
        };
        cell.expect("fixed-size wallet data fits in one cell")
    }

    pub fn state_init(&self) -> StateInit {
        StateInit::new(self.version.code().clone(), self.data_cell(0).to_arc())
    }

    pub fn state_init_cell(&self) -> Cell {
        self.state_init()
            .to_cell()
            .expect("StateInit of code and data refs fits in one cell")
    }

    /// Base64 BOC of the StateInit, as TON Connect's `walletStateInit`.
    pub fn state_init_boc(&self) -> String {
        super::boc::to_base64(&self.state_init_cell())
            .expect("serialising a small cell tree cannot fail")
    }
}

impl fmt::Debug for WalletContract {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("WalletContract")
            .field("version", &self.version)
            .field("network", &self.network)
            .field("wallet_id", &self.wallet_id)
            .field("address", &self.raw_address())
            .finish()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn reference_key() -> PublicKey {
        let bytes: [u8; 32] =
            hex::decode("020be512d3a6eecc8d9e2c0ed2b712497592bbb670948bcd06e3ee22a729e25d")
                .unwrap()
                .try_into()
                .unwrap();
        PublicKey(bytes)
    }

    #[test]
    fn wallet_ids_match_the_published_constants() {
        assert_eq!(
            default_wallet_id(WalletVersion::V5R1, Network::Mainnet),
            tonlib_core::wallet::versioned::DEFAULT_WALLET_ID_V5R1
        );
        assert_eq!(
            default_wallet_id(WalletVersion::V5R1, Network::Testnet),
            tonlib_core::wallet::versioned::DEFAULT_WALLET_ID_V5R1_TESTNET
        );
        assert_eq!(
            default_wallet_id(WalletVersion::V5R1, Network::Mainnet),
            2_147_483_409
        );
        assert_eq!(
            default_wallet_id(WalletVersion::V4R2, Network::Testnet),
            tonlib_core::wallet::versioned::DEFAULT_WALLET_ID
        );
    }

    #[test]
    fn addresses_match_the_reference_vector() {
        let v4 = WalletContract::new(WalletVersion::V4R2, Network::Mainnet, reference_key());
        assert_eq!(
            v4.raw_address(),
            "0:eb9d4873b9f40fda8d7429ca7c89f96da0dc5aad0be4c762881e91d7375f03d3"
        );
        assert_eq!(
            v4.friendly_address(true),
            "EQDrnUhzufQP2o10Kcp8ifltoNxarQvkx2KIHpHXN18D07_R"
        );
        let v5 = WalletContract::new(WalletVersion::V5R1, Network::Mainnet, reference_key());
        assert_eq!(
            v5.raw_address(),
            "0:07f9801b9bee20cd88bd84502667815757268c4263ac97de622754f380e479db"
        );
        assert_eq!(
            v5.friendly_address(false),
            "UQAH-YAbm-4gzYi9hFAmZ4FXVyaMQmOsl95iJ1TzgOR52_4t"
        );
        // The testnet W5 has another wallet id, hence another address.
        let v5t = WalletContract::new(WalletVersion::V5R1, Network::Testnet, reference_key());
        assert_ne!(v5t.address(), v5.address());
    }

    #[test]
    fn versions_are_recognised_by_code_hash() {
        for v in WalletVersion::ALL {
            assert_eq!(WalletVersion::from_code_hash(&v.code_hash()), Some(v));
        }
        assert_eq!(
            WalletVersion::from_code_hash(&TonHash::from([0u8; 32])),
            None
        );
        assert_eq!("W5".parse::<WalletVersion>(), Ok(WalletVersion::V5R1));
        assert!("v3r2".parse::<WalletVersion>().is_err());
    }
}
